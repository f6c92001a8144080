import { RunSpecSchema, type RunSpec } from '../../core/run-spec.ts';
import { finalPrefix, runPrefix, shardsPrefix } from '../../core/s3-layout.ts';
import { openStore, type ObjectStore } from '../../core/store.ts';
import type { ExecutionProvider } from '../engine/options.ts';
import { createTrainer as engineTrainer } from '../clip/trainer.ts';
import { TrainInputError } from '../../core/run-errors.ts';
import { latestModel } from '../../core/latest-model.ts';
import { LATEST, chooseModel, loadBaseModel } from './base-model.ts';
import { jsonLinesTo, type Logger } from './log.ts';
import { runLoop, type CreateTrainer, type TrainJob } from './loop.ts';
import type { RetrievalMetrics } from './metrics.ts';
import { writeFinal, type FinalWritten } from './write-final.ts';
import { resolveRecipe } from './recipe.ts';

/** What the Train task returns to Step Functions. */
export interface TrainOutput {
  runId: string;
  steps: number;
  /** Key prefix of the published directory in the bucket: runs/<runId>/final/. */
  finalPrefix: string;
  sha256: string;
  before: RetrievalMetrics;
  after: RetrievalMetrics;
}

export interface TrainDescription {
  dataset: string;
  baseModel: string;
  modelName: string;
}

export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'cuda', 'webgpu'];

/**
 * Execution providers in order of preference from a flag or RSCLIP_EP (the images set it), such as `cuda,webgpu`:
 * training uses the first that loads on the host. Undefined leaves the engine default (the CPU).
 */
export function parseProviders(value: string | undefined, source: string): ExecutionProvider[] | undefined {
  if (value === undefined || value === '') return undefined;
  const problem = providersProblem(value);
  if (problem) throw new TrainInputError(`${source} ${problem}`);
  return value.split(',').map((v) => v.trim()) as ExecutionProvider[];
}

/** Why a comma-separated provider list cannot be used, or undefined when it can. */
export function providersProblem(value: string): string | undefined {
  const list = value.split(',').map((v) => v.trim());
  const unknown = list.find((v) => !EXECUTION_PROVIDERS.includes(v as ExecutionProvider));
  if (unknown !== undefined) return `must list providers among ${EXECUTION_PROVIDERS.join(', ')}, got '${unknown}'`;
  if (new Set(list).size !== list.length) return `names a provider twice: '${value}'`;
  return undefined;
}

/** Trains (resuming when a checkpoint exists), then publishes final/. Shared by `rsclip train` and runTraining. */
export async function trainAndPublish(job: TrainJob, about: TrainDescription, createTrainer: CreateTrainer = engineTrainer): Promise<FinalWritten> {
  const result = await runLoop(job, createTrainer);
  try {
    const { params } = await result.trainer.snapshot();
    const published = await writeFinal(job.out, params, {
      ...about,
      config: job.config,
      recipe: job.recipe,
      plan: result.plan,
      trainRows: result.index.totals.train,
      shards: result.index.keys.length,
      steps: result.state.step,
      evalSplit: result.evalSplit,
      history: result.state.history,
      evals: result.state.evals,
      best: result.state.best,
      test: result.test,
    });
    job.log({ event: 'published', finalPrefix: published.finalPrefix, sha256: published.sha256 });
    return published;
  } finally {
    await result.trainer.close();
  }
}

export interface RunDeps {
  /** The bucket's root; defaults to s3://<spec.bucket>. */
  bucket?: ObjectStore;
  createTrainer?: CreateTrainer;
  log?: Logger;
  providers?: ExecutionProvider[];
  /** TrainJob.deadline: when this attempt must have stopped (epoch ms). */
  deadline?: number;
}

/**
 * The Train task: shards from runs/<runId>/shards/, checkpoints and final/ under runs/<runId>/. Restarting it
 * with the same spec resumes from the latest checkpoint.
 */
export async function runTraining(input: RunSpec, deps: RunDeps = {}): Promise<TrainOutput> {
  const spec = RunSpecSchema.parse(input);
  const bucket = deps.bucket ?? openStore(`s3://${spec.bucket}`);
  const o = spec.options;
  let base = o.init ?? spec.baseModel;
  if (!base) throw new TrainInputError(`run ${spec.runId}: no base model (set "init" in train.json or the deployment's baseModel)`);
  let modelName = o.model;
  if (base === LATEST) {
    const latest = await latestModel(bucket, spec.dataset);
    base = latest.uri;
    modelName ??= latest.modelName;
  }
  const model = chooseModel(base, modelName, o.model ? 'train.json "model"' : 'the run that published latest.json');
  const recipe = resolveRecipe(model.config, o);
  const out = bucket.child(runPrefix(spec.runId));
  const published = await trainAndPublish(
    {
      shards: bucket.child(shardsPrefix(spec.runId)),
      out,
      config: model.config,
      recipe,
      loadBase: () => loadBaseModel(base, model, recipe.seed, { ignoreUnexpectedKeys: o.ignoreUnexpectedKeys, log: deps.log }),
      providers: deps.providers ?? parseProviders(process.env.RSCLIP_EP, 'RSCLIP_EP'),
      log: deps.log ?? jsonLinesTo(process.stderr),
      deadline: deps.deadline,
    },
    { dataset: spec.dataset, baseModel: base, modelName: model.name },
    deps.createTrainer,
  );
  return {
    runId: spec.runId,
    steps: published.metrics.steps,
    finalPrefix: `${finalPrefix(spec.runId)}/`,
    sha256: published.sha256,
    before: published.metrics.before,
    after: published.metrics.after,
  };
}
