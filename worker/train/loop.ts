import type { Split } from '../../core/shard-format.ts';
import { chooseProvider } from '../engine/session.ts';
import type { ObjectStore } from '../../core/store.ts';
import { makeBatch } from '../data/batch.ts';
import { Rng } from '../data/rng.ts';
import { epochSamples, indexShards, type DataCursor, type Sample, type ShardIndex } from '../data/shard-stream.ts';
import type { ClipTrainer, StepInput, TrainerOptions } from '../clip/api.ts';
import type { Batch } from '../data/batch.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { ExecutionProvider } from '../engine/options.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { loadLatestCheckpoint, saveCheckpoint, type Checkpoint, type EvalRecord, type TrainerState } from './checkpoints.ts';
import { evaluateSplit } from './evaluate.ts';
import { AttemptDeadline, TrainInputError } from '../../core/run-errors.ts';
import type { Logger } from './log.ts';
import type { RetrievalMetrics } from './metrics.ts';
import { checkpointDir } from '../../core/s3-layout.ts';
import { COMMON, planSteps, type ResolvedRecipe, type StepPlan } from './recipe.ts';
import { cosineLr } from './schedule.ts';

/** Training that produced NaN or infinity: the hyper-parameters or the base checkpoint, not a retryable fault. */
const diverged = (what: string) =>
  new TrainInputError(`training diverged: ${what}; check lr, beta1, beta2 and eps in train.json and the base checkpoint for NaN or Inf (nothing is published; earlier checkpoints are kept)`);

export interface ProgressLike {
  tick(n?: number, info?: Record<string, string | number>): void;
  done(): void;
}

export interface TrainJob {
  shards: ObjectStore;
  /** Shards to evaluate on; the training shards' val split by default. */
  valShards?: ObjectStore;
  /** Output root: checkpoints/ and final/ go below it. */
  out: ObjectStore;
  config: ClipModelConfig;
  recipe: ResolvedRecipe;
  /** Only called on a fresh start: a resumed run takes its weights from the checkpoint. */
  loadBase: () => Promise<StateDict>;
  /** In order of preference: the first that loads here trains (engine/session.ts chooseProvider). Default: CPU. */
  providers?: ExecutionProvider[];
  log: Logger;
  progress?: (label: string, total: number) => ProgressLike;
  /**
   * Epoch milliseconds by which this attempt must have stopped: before a chunk that might not finish (with its
   * checkpoint) in time, it checkpoints and throws AttemptDeadline. Every attempt runs at least one chunk.
   */
  deadline?: number;
}

export type CreateTrainer = (opts: TrainerOptions) => Promise<ClipTrainer>;

export interface LoopResult {
  trainer: ClipTrainer;
  plan: StepPlan;
  state: TrainerState;
  /** Split the per-epoch evaluation used. */
  evalSplit: Split;
  /** Test-split metrics of the final weights, when the data has a test split. */
  test?: RetrievalMetrics;
  index: ShardIndex;
}

// Independent of the data-order streams (shard-stream.ts salts 1 and 2).
const SALT_AUGMENT = 3;

/** Steps per engine run, so that a chunk's normalised images stay under COMMON.chunkImageBytes. */
export function stepsPerRun(config: ClipModelConfig, plan: StepPlan, accumulate: number, ep: ExecutionProvider = 'cpu'): number {
  const s = config.vision_cfg.image_size;
  const bytesPerStep = accumulate * plan.batchSize * 3 * s * s * 4;
  return Math.max(1, Math.min(COMMON.stepsPerRun[ep], Math.floor(COMMON.chunkImageBytes / bytesPerStep)));
}

const nextMultiple = (step: number, every: number): number => (Math.floor(step / every) + 1) * every;

/**
 * The end of the chunk that starts at `step`: chunks never straddle an engine-run boundary, a checkpoint, an epoch
 * end or the last step. Every cut is a function of the absolute step, so a resumed run (which starts at a
 * checkpoint) groups its steps into engine runs exactly as an uninterrupted one.
 */
export function chunkEnd(step: number, plan: StepPlan, perRun: number, checkpointEvery: number): number {
  return Math.min(
    nextMultiple(step, perRun),
    nextMultiple(step, checkpointEvery),
    nextMultiple(step, plan.stepsPerEpoch),
    plan.totalSteps,
  );
}

/** The split the per-epoch evaluation uses: val, else test, else (labelled as such) train. */
export function evalSplitOf(index: ShardIndex): Split {
  return (['val', 'test', 'train'] as const).find((s) => index.totals[s] > 0)!;
}

function fingerprintOf(job: TrainJob, plan: StepPlan, index: ShardIndex): Record<string, unknown> {
  const r = job.recipe;
  return {
    ...plan,
    lr: r.lr,
    accumulate: r.accumulate,
    hyper: r.hyper,
    seed: r.seed,
    checkpointEvery: r.checkpointEvery,
    augment: r.augment,
    freeze: r.freeze,
    freezeBnStats: r.freezeBnStats,
    shards: index.keys,
    trainRows: index.totals.train,
  };
}

function fingerprintDiff(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}

/** Trains from the latest checkpoint under `job.out` (or from the base model), evaluating and checkpointing. */
export async function runLoop(job: TrainJob, createTrainer: CreateTrainer): Promise<LoopResult> {
  const { log, recipe } = job;
  const index = await indexShards(job.shards);
  const valIndex = job.valShards ? await indexShards(job.valShards) : index;
  const valStore = job.valShards ?? job.shards;
  const size = job.config.vision_cfg.image_size;
  if (index.imageSize !== size) {
    throw new TrainInputError(`shards under ${job.shards.uri} hold ${index.imageSize}px images but the model expects ${size}px`);
  }
  const plan = planSteps(recipe, index.totals.train);
  const { ep, skipped } = await chooseProvider(job.providers ?? ['cpu']).catch((e: Error) => {
    throw new TrainInputError(e.message);
  });
  for (const s of skipped) log({ event: 'provider-unavailable', ep: s.ep, reason: s.reason });
  const perRun = stepsPerRun(job.config, plan, recipe.accumulate, ep);
  const fingerprint = fingerprintOf(job, plan, index);
  const evalSplit = evalSplitOf(valIndex);

  const resumed: Checkpoint | undefined = await loadLatestCheckpoint(job.out);
  let state: TrainerState;
  if (resumed) {
    const differs = fingerprintDiff(resumed.state.fingerprint, fingerprint);
    if (differs.length) {
      throw new TrainInputError(
        `${job.out.uri}: its checkpoint was made with different settings (${differs.join(', ')}); use a new output location or the same settings`,
      );
    }
    state = resumed.state;
    log({ event: 'resume', step: state.step, cursor: state.cursor });
  } else {
    state = {
      step: 0,
      cursor: { epoch: 0, sample: 0 },
      augmentRng: Rng.fromSeed(recipe.seed, SALT_AUGMENT).state(),
      fingerprint,
      history: [],
      evals: [],
    };
  }
  log({ event: 'plan', ...plan, ep, stepsPerRun: perRun, trainRows: index.totals.train, shards: index.keys.length, evalSplit });

  const trainer = await createTrainer({
    config: job.config,
    init: resumed ? resumed.params : await job.loadBase(),
    batchSize: plan.batchSize,
    accumulate: recipe.accumulate,
    hyper: recipe.hyper,
    freeze: recipe.freeze,
    freezeBnStats: recipe.freezeBnStats,
    ep,
    stepsPerRun: perRun,
    optimizer: resumed?.optimizer,
  });
  try {
    // Evaluations during training see the same sample, so that their cost does not grow with the data; the last,
    // of the weights that get published, sees the whole split (`images` tells them apart: on a split larger than
    // the sample, its queries rank among more distractors).
    const evaluate = async (epoch: number, last: boolean): Promise<EvalRecord> => {
      const opts = last ? {} : { maxImages: recipe.evalSampleImages };
      const metrics = (await evaluateSplit(trainer, valStore, valIndex, evalSplit, opts))!;
      const rec: EvalRecord = { step: state.step, epoch, split: evalSplit, metrics };
      log({ event: 'eval', ...rec });
      return rec;
    };
    if (!state.evals.some((e) => e.step === 0)) state.evals.push(await evaluate(0, false));

    let checkpointMs = 0;
    const checkpoint = async (): Promise<void> => {
      const started = performance.now();
      const snap = await trainer.snapshot();
      // A non-finite parameter is never saved, so it can neither be resumed from nor published.
      for (const [name, t] of snap.params) {
        if (!t.data.every(Number.isFinite)) throw diverged(`after step ${state.step}, parameter ${name} is not finite`);
      }
      const pointer = await saveCheckpoint(job.out, { params: snap.params, optimizer: snap.optimizer, state });
      log({ event: 'checkpoint', ...pointer });
      checkpointMs = performance.now() - started;
    };

    const progress = job.progress?.('train', plan.totalSteps);
    progress?.tick(state.step);
    const rng = Rng.fromState(state.augmentRng);
    let samples: AsyncGenerator<Sample> | undefined;
    const take = async (n: number): Promise<Sample[]> => {
      samples ??= epochSamples(job.shards, index, recipe.seed, state.cursor);
      const out: Sample[] = [];
      while (out.length < n) {
        const r = await samples.next();
        if (r.done) throw new TrainInputError(`epoch ${state.cursor.epoch} ran out of samples (the shards changed during the run?)`);
        out.push(r.value);
      }
      state.cursor = out[out.length - 1]!.after;
      return out;
    };
    const batch = async (): Promise<Batch> => makeBatch(await take(plan.batchSize), size, recipe.augment, rng);

    let chunkMs: number | undefined;
    while (state.step < plan.totalSteps) {
      // Twice the last chunk's time, for the evaluation an epoch end adds and for noise.
      if (job.deadline !== undefined && chunkMs !== undefined && Date.now() + 2 * chunkMs + checkpointMs > job.deadline) {
        await checkpoint();
        throw new AttemptDeadline(state.step);
      }
      const chunkStarted = performance.now();
      const end = chunkEnd(state.step, plan, perRun, recipe.checkpointEvery);
      const steps: StepInput[] = [];
      for (let s = state.step; s < end; s++) {
        const micro: Batch[] = [];
        for (let a = 0; a < recipe.accumulate; a++) micro.push(await batch());
        steps.push({ micro, lr: cosineLr(s, recipe.lr, plan.warmupSteps, plan.totalSteps) });
      }
      const started = performance.now();
      const results = await trainer.train(steps);
      const bad = results.findIndex((r) => !Number.isFinite(r.loss) || !Number.isFinite(r.gradNorm));
      if (bad >= 0) {
        const r = results[bad]!;
        throw diverged(`at step ${state.step + bad + 1} (learning rate ${steps[bad]!.lr}) the loss is ${r.loss} and the gradient norm ${r.gradNorm}`);
      }
      const samplesPerSec = (steps.length * recipe.accumulate * plan.batchSize) / ((performance.now() - started) / 1000);
      results.forEach((r, i) => {
        const rec = {
          step: state.step + i + 1,
          epoch: Math.floor((state.step + i) / plan.stepsPerEpoch),
          loss: r.loss,
          lr: steps[i]!.lr,
          logit_scale: r.logitScale,
          grad_norm: r.gradNorm,
        };
        state.history.push(rec);
        if (!progress) log({ event: 'step', ...rec, samples_per_s: Number(samplesPerSec.toFixed(2)) });
        else progress.tick(1, { loss: r.loss, lr: rec.lr });
      });
      state.step = end;
      state.augmentRng = rng.state();

      const epochDone = end % plan.stepsPerEpoch === 0;
      if (epochDone || end === plan.totalSteps) {
        if (epochDone) {
          // Drop the epoch's remainder (open_clip drops the last partial batch) and start the next epoch.
          await samples?.return(undefined);
          samples = undefined;
          state.cursor = { epoch: end / plan.stepsPerEpoch, sample: 0 } satisfies DataCursor;
        }
        const rec = await evaluate(Math.ceil(end / plan.stepsPerEpoch), end === plan.totalSteps);
        state.evals.push(rec);
        if (!state.best || rec.metrics.mean_recall > state.best.mean_recall!) {
          state.best = { step: end, dir: checkpointDir(end), mean_recall: rec.metrics.mean_recall };
        }
        await checkpoint();
      } else if (end % recipe.checkpointEvery === 0) {
        await checkpoint();
      }
      chunkMs = performance.now() - chunkStarted;
    }
    progress?.done();
    await samples?.return(undefined);

    const test = evalSplit !== 'test' && valIndex.totals.test > 0 ? await evaluateSplit(trainer, valStore, valIndex, 'test') : undefined;
    if (test) log({ event: 'eval', step: state.step, split: 'test', metrics: test });
    return { trainer, plan, state, evalSplit, test, index };
  } catch (e) {
    await trainer.close();
    throw e;
  }
}
