import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import type { TrainOptions } from '../../core/train-options.ts';
import { CAPTIONS_FILE, captionsKey, FINAL, datasetPrefix, modelLatestKey, runPrefix, shardsPrefix, TRAIN_OPTIONS_FILE, validationKey } from '../../core/s3-layout.ts';
import { FsStore, type ObjectStore } from '../../core/store.ts';
import type { RetrievalMetrics } from '../../worker/train/metrics.ts';
import { chooseModel, LATEST, loadBaseModel, RANDOM_PREFIX, type ModelChoice } from '../../worker/train/base-model.ts';
import { resolveRecipe } from '../../worker/train/recipe.ts';
import { runTraining } from '../../worker/train/run.ts';
import type { TrainEvent } from '../../worker/train/log.ts';
import { UserError, type Command } from '../command.ts';
import { drainCreatedObjects, startLocalS3, uploadFolder } from '../local-s3.ts';
import { createProgress, logLine, type Progress } from '../progress.ts';
import { REPORT_FILE, writeReport } from '../report/build.ts';
import { METRIC_ROWS } from '../report/html.ts';
import { LocalPipeline, type LocalWorkflowOptions } from '../../cdk/local/run-workflow.ts';
import { STATE } from '../../cdk/workflow.ts';
import { parseFlags, readOptionsFile } from '../flags.ts';

const USAGE = 'run --data <dir> [--model <checkpoint|random:CONFIG>] [--config <train.json>] [--out <dir>] [--name <dataset>] [--json]';

export interface LocalRunOptions {
  /** Folder with captions.csv and the images it names (and optionally train.json). */
  data: string;
  /** Base checkpoint: a local .pt/.safetensors, s3:// URI, or `random:<config>`; wins over train.json's `init`. */
  model?: string;
  /** A train.json-style file merged over the dataset's. */
  config?: string;
  /** Result folder; default ./out/<dataset>. */
  out?: string;
  /** Dataset name in the bucket; default: the folder's name. */
  name?: string;
  /** Progress and stage lines go here (stderr by default). */
  log?: (line: string) => void;
}

export interface LocalRunResult {
  runId: string;
  dataset: string;
  out: string;
  report: string;
  steps: number;
  before: RetrievalMetrics;
  after: RetrievalMetrics;
  seconds: number;
}

/** Bucket-safe dataset name from a folder name. */
export function datasetName(dir: string): string {
  const name = basename(resolve(dir)).replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+|[-.]+$/g, '');
  if (!name) throw new UserError(`cannot derive a dataset name from '${dir}': pass --name`);
  return name;
}

/** A local checkpoint path made absolute (the worker may run elsewhere than the cwd); URIs and keywords unchanged. */
function localModelPath(model: string): string {
  return model.startsWith(RANDOM_PREFIX) || model === LATEST || /^[a-z][a-z0-9+.-]*:\/\//i.test(model) ? model : resolve(model);
}

/** Training events as a progress bar (steps) and one line per evaluation. */
function trainingLog(log: (line: string) => void): { event(e: TrainEvent): void; close(): void } {
  let bar: Progress | undefined;
  return {
    event(e) {
      if (e.event === 'plan') {
        log(`train: ${e.totalSteps} steps (${e.epochs} epochs of ${e.stepsPerEpoch}, batch ${e.batchSize}) on ${e.trainRows} caption rows`);
        bar = createProgress('train', Number(e.totalSteps));
      } else if (e.event === 'step') {
        bar?.tick(1, { loss: Number(e.loss), lr: Number(e.lr) });
      } else if (e.event === 'eval') {
        const m = e.metrics as RetrievalMetrics;
        log(`eval (${e.split}, step ${e.step}): mean recall ${m.mean_recall.toFixed(1)}%${m.zeroshot_top1 !== undefined ? `, zero-shot ${m.zeroshot_top1.toFixed(1)}%` : ''}`);
      } else if (e.event === 'published') {
        bar?.done();
        bar = undefined;
      }
    },
    close() {
      bar?.done();
    },
  };
}

type WorkflowEvent = Parameters<NonNullable<LocalWorkflowOptions<unknown>['onEvent']>>[0];

/** The state machine's progress: one line per top-level state, a bar over the Shard map's items. */
function stageLog(log: (line: string) => void): (e: WorkflowEvent) => void {
  let shards: Progress | undefined;
  return (e) => {
    if (e.type === 'MapIterationSucceeded' || e.type === 'MapIterationFailed') {
      shards?.tick(1, e.type === 'MapIterationFailed' ? { failed: e.index } : undefined);
      return;
    }
    if (e.type === 'MapRunStarted' && e.state.name === STATE.shard) {
      shards = createProgress('shard', e.executions);
      return;
    }
    if (e.type !== 'StateEntered' && e.type !== 'StateExited' && e.type !== 'StateFailed') return;
    const { name, output } = e.state;
    if (e.type === 'StateFailed') {
      if (e.state.type === 'Task') log(`${name}: failed: ${e.Error}: ${typeof e.Cause === 'string' ? e.Cause : JSON.stringify(e.Cause)}`);
    } else if (e.type === 'StateExited' && name === STATE.shard) {
      shards?.done();
    } else if (e.type === 'StateExited' && name === STATE.validate && typeof (output as { rows?: unknown } | undefined)?.rows === 'number') {
      const v = output as { rows?: number; images?: number; shards?: number; imageSize?: number };
      log(`validate: ${v.rows} caption rows, ${v.images} images, ${v.shards} shards of ${v.imageSize}px images`);
    } else if (e.type === 'StateEntered' && (name === STATE.validate || name === STATE.train || name === STATE.publish)) {
      log(`${name}...`);
    }
  };
}

async function copyPrefix(from: ObjectStore, to: ObjectStore): Promise<number> {
  const objects = await from.list();
  for (const o of objects) await to.put(o.key, await from.get(o.key));
  return objects.length;
}

/**
 * The whole pipeline on this machine: an S3 API server on loopback, the dataset uploaded as datasets/<name>/,
 * the synthesized state machine run with the real handlers and the worker on CPU, then the published model,
 * validation report and latest.json copied into `out` with a report.html.
 */
export async function runLocal(o: LocalRunOptions): Promise<LocalRunResult> {
  const log = o.log ?? ((line: string) => logLine(line));
  const t0 = Date.now();
  const data = resolve(o.data);
  if (!(await stat(data).catch(() => undefined))?.isDirectory()) throw new UserError(`--data ${o.data}: not a folder`);
  if (!(await stat(resolve(data, CAPTIONS_FILE)).catch(() => undefined))?.isFile()) throw new UserError(`--data ${o.data}: has no ${CAPTIONS_FILE}`);
  const dataset = o.name ?? datasetName(data);
  const options: TrainOptions = {
    ...(await readOptionsFile(resolve(data, TRAIN_OPTIONS_FILE), false)),
    ...(o.config ? await readOptionsFile(o.config, true) : {}),
    ...(o.model ? { init: localModelPath(o.model) } : {}),
  };
  if (!options.init) throw new UserError(`no base model: pass --model <checkpoint|random:ViT-tiny> or set "init" in ${TRAIN_OPTIONS_FILE}`);
  const init = options.init;
  const out = new FsStore(o.out ?? resolve('out', dataset));

  let model: ModelChoice;
  try {
    model = chooseModel(init, options.model);
  } catch (e) {
    throw new UserError(`model config: ${(e as Error).message}`);
  }

  // The handlers' Powertools logs and EMF metrics print to stdout, which carries this command's result.
  process.env.POWERTOOLS_LOG_LEVEL ??= 'WARN';
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  const s3 = await startLocalS3();
  try {
    log(`local S3 at ${s3.endpoint}, bucket ${s3.bucket}; uploading ${data} as ${datasetPrefix(dataset)}/`);
    const files = await uploadFolder(s3, datasetPrefix(dataset), data, {
      replace: new Map([[TRAIN_OPTIONS_FILE, `${JSON.stringify(options, null, 2)}\n`]]),
      progress: (n) => createProgress('upload', n),
    });
    log(`uploaded ${files.length} files; ${CAPTIONS_FILE} written last, starting the workflow`);

    const training = trainingLog(log);
    const pipeline = new LocalPipeline({
      s3Endpoint: s3.endpoint,
      train: (spec) => runTraining(spec, { bucket: s3.store, log: training.event }),
      onEvent: stageLog(log),
    });
    const started: string[] = [];
    for (const put of await drainCreatedObjects(s3)) {
      for (const r of await pipeline.objectCreated(put)) if (r.status === 'started') started.push(r.runId);
    }
    if (started.length !== 1) throw new Error(`expected the upload to start one run, it started ${started.length}`);
    const runId = started[0]!;
    log(`run ${runId} started by the upload of ${captionsKey(dataset)}`);
    let result;
    try {
      result = await pipeline.result(runId);
    } finally {
      training.close();
    }
    const validation = await s3.store.tryGet(validationKey(runId));
    if (validation) await out.put('validation.json', validation);
    if (result.status !== 'SUCCEEDED') {
      const where = validation ? ` (details: ${resolve(out.root, 'validation.json')})` : '';
      throw new UserError(`run ${runId} failed: ${result.error?.name ?? 'unknown error'}: ${result.error?.cause ?? ''}${where}`);
    }

    await copyPrefix(s3.store.child(`${runPrefix(runId)}/${FINAL}`), out);
    await out.put('latest.json', await s3.store.get(modelLatestKey(dataset)));
    log(`building ${REPORT_FILE}: embedding the validation images with the base and the fine-tuned model`);
    // The starting weights again, as the worker loaded them (same seed for a random init), for the gallery's "before".
    const params = await loadBaseModel(init, model.config, resolveRecipe(model.config, options).seed);
    await writeReport({ out, shards: s3.store.child(shardsPrefix(runId)), base: { uri: init, config: model.config, params }, runId, seconds: (Date.now() - t0) / 1000 });
    const metrics = JSON.parse(Buffer.from(await out.get('metrics.json')).toString('utf8')) as {
      steps: number;
      before: RetrievalMetrics;
      after: RetrievalMetrics;
    };
    return {
      runId,
      dataset,
      out: out.root,
      report: resolve(out.root, REPORT_FILE),
      steps: metrics.steps,
      before: metrics.before,
      after: metrics.after,
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    await s3.stop();
  }
}

/** The before/after table printed at the end of `run` and `demo`. */
export function resultTable(r: LocalRunResult): string {
  const cell = (v: number | undefined): string => (v === undefined ? '–' : v.toFixed(1)).padStart(8);
  const lines = [`${'metric (%)'.padEnd(26)}${'before'.padStart(8)}${'after'.padStart(8)}`];
  for (const [k, label] of METRIC_ROWS) {
    if (r.before[k] === undefined && r.after[k] === undefined) continue;
    lines.push(`${label.padEnd(26)}${cell(r.before[k])}${cell(r.after[k])}`);
  }
  return lines.join('\n');
}

export function printResult(r: LocalRunResult, json: boolean): void {
  console.log(resultTable(r));
  console.log(`\n${r.steps} steps, ${r.seconds.toFixed(1)} s. Model and report in ${r.out}\nreport: ${r.report}`);
  if (json) console.log(JSON.stringify({ runId: r.runId, before: r.before, after: r.after, seconds: r.seconds, report: r.report }));
}

const command: Command = {
  summary: 'run the whole pipeline locally (embedded S3, the real state machine and handlers, CPU worker) on a folder',
  async run(argv) {
    const f = parseFlags(
      argv,
      {
        data: { type: 'string' },
        model: { type: 'string' },
        config: { type: 'string' },
        out: { type: 'string' },
        name: { type: 'string' },
        json: { type: 'boolean' },
      },
      USAGE,
    );
    if (!f.data) throw new UserError(`--data is required\nusage: ${USAGE}`);
    const r = await runLocal({ data: f.data, model: f.model, config: f.config, out: f.out, name: f.name });
    printResult(r, Boolean(f.json));
    return 0;
  },
};

export default command;
