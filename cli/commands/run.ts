import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { modelNameProblem } from '../../core/model-config/config.ts';
import type { TrainOptions } from '../../core/train-options.ts';
import {
  CAPTIONS_FILE,
  captionsKey,
  CHECKPOINTS,
  FINAL_FILES,
  finalPrefix,
  LATEST_CHECKPOINT,
  datasetPrefix,
  modelLatestKey,
  runPrefix,
  shardsPrefix,
  TRAIN_OPTIONS_FILE,
  validationKey,
} from '../../core/s3-layout.ts';
import { FsStore, type Body, type ObjectInfo, type ObjectStore } from '../../core/store.ts';
import type { RetrievalMetrics } from '../../worker/train/metrics.ts';
import { chooseModel, LATEST, loadBaseModel, RANDOM_PREFIX, type ModelChoice } from '../../worker/train/base-model.ts';
import { resolveRecipe } from '../../worker/train/recipe.ts';
import { runTraining } from '../../worker/train/run.ts';
import { readPointer } from '../../worker/train/checkpoints.ts';
import type { TrainEvent } from '../../worker/train/log.ts';
import { z } from 'zod';
import { defineCommand, option, UserError } from '../command.ts';
import { drainCreatedObjects, startLocalS3, uploadFolder, type CreatedObject } from '../local-s3.ts';
import { createProgress, logLine, type Progress } from '../progress.ts';
import { REPORT_FILE, writeReport } from '../report/build.ts';
import { METRIC_ROWS } from '../report/html.ts';
import { LocalPipeline, type LocalWorkflowOptions } from '../../cdk/local/run-workflow.ts';
import { STATE } from '../../cdk/workflow.ts';
import { DATA, datasetNameOf, FLAGS, MODEL_HELP, readOptionsFile } from '../flags.ts';

export interface LocalRunOptions {
  /** Folder with captions.csv and the images it names (and optionally train.json). */
  data: string;
  /** Base checkpoint: a local .pt/.safetensors, s3:// URI, or `random:<config>`; wins over train.json's `init`. */
  model?: string;
  /** A train.json-style file merged over the dataset's. */
  options?: string;
  /**
   * Result folder; default ./out/<dataset>. Replaced as a whole only by a successful run; a failed one adds
   * failed/validation.json, an interrupted one its checkpoints under .incoming-<runId>/ (a re-run resumes there).
   */
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

/** A local checkpoint path made absolute (the worker may run elsewhere than the cwd); URIs and keywords unchanged. */
function localModelPath(model: string): string {
  return model.startsWith(RANDOM_PREFIX) || model === LATEST || /^[a-z][a-z0-9+.-]*:\/\//i.test(model) ? model : resolve(model);
}

/** Training events as a progress bar (steps) and one line per evaluation. */
function trainingLog(log: (line: string) => void, checkpoints: () => string): { event(e: TrainEvent): void; close(): void } {
  let bar: Progress | undefined;
  let resumed = 0;
  return {
    event(e) {
      if (e.event === 'resume') {
        resumed = Number(e.step);
        log(`train: resumed from step ${resumed}, the last checkpoint of an interrupted run of the same data (${checkpoints()})`);
      } else if (e.event === 'plan') {
        log(`train: ${e.totalSteps} steps (${e.epochs} epochs of ${e.stepsPerEpoch}, batch ${e.batchSize}) on ${e.trainRows} caption rows`);
        bar = createProgress('train', Number(e.totalSteps));
        if (resumed) bar.tick(resumed);
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
 * The bucket as the worker sees it, with runs/<runId>/checkpoints/ in a folder on disk: the local S3 server lives
 * only as long as this process, and checkpoints written straight to disk (each file atomically, latest.json last)
 * are what a re-run after a kill resumes from.
 */
class CheckpointsOnDisk implements ObjectStore {
  private readonly base: ObjectStore;

  constructor(
    private readonly root: ObjectStore,
    /** Key of the checkpoints folder from the bucket's root. */
    private readonly routed: string,
    private readonly disk: ObjectStore,
    private readonly prefix = '',
  ) {
    this.base = prefix ? root.child(prefix) : root;
  }

  get uri(): string {
    return this.base.uri;
  }

  private full(key: string): string {
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  /** The key in the checkpoints folder, when `key` is in it. */
  private onDisk(key: string): string | undefined {
    const full = this.full(key);
    return full.startsWith(`${this.routed}/`) ? full.slice(this.routed.length + 1) : undefined;
  }

  private fromDisk(infos: ObjectInfo[]): ObjectInfo[] {
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    return infos.map((o) => ({ ...o, key: `${this.routed}/${o.key}`.slice(strip) }));
  }

  get(key: string): Promise<Uint8Array> {
    const d = this.onDisk(key);
    return d === undefined ? this.base.get(key) : this.disk.get(d);
  }

  tryGet(key: string): Promise<Uint8Array | undefined> {
    const d = this.onDisk(key);
    return d === undefined ? this.base.tryGet(key) : this.disk.tryGet(d);
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    const d = this.onDisk(key);
    return d === undefined ? this.base.head(key) : this.disk.head(d).then((o) => o && { ...o, key });
  }

  async list(prefix = ''): Promise<ObjectInfo[]> {
    const d = this.onDisk(prefix);
    if (d !== undefined) return this.fromDisk(await this.disk.list(d));
    const listed = await this.base.list(prefix);
    // A listing above the checkpoints folder sees it too.
    if (!`${this.routed}/`.startsWith(this.full(prefix))) return listed;
    return [...listed, ...this.fromDisk(await this.disk.list())].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async *listEach(prefix = ''): AsyncGenerator<ObjectInfo> {
    if (this.onDisk(prefix) === undefined && !`${this.routed}/`.startsWith(this.full(prefix))) yield* this.base.listEach(prefix);
    else yield* await this.list(prefix);
  }

  stream(key: string): AsyncIterable<Uint8Array> {
    const d = this.onDisk(key);
    return d === undefined ? this.base.stream(key) : this.disk.stream(d);
  }

  getRange(key: string, start: number, end: number): Promise<Uint8Array> {
    const d = this.onDisk(key);
    return d === undefined ? this.base.getRange(key, start, end) : this.disk.getRange(d, start, end);
  }

  put(key: string, body: Body): Promise<void> {
    const d = this.onDisk(key);
    return d === undefined ? this.base.put(key, body) : this.disk.put(d, body);
  }

  delete(key: string): Promise<void> {
    const d = this.onDisk(key);
    return d === undefined ? this.base.delete(key) : this.disk.delete(d);
  }

  child(prefix: string): ObjectStore {
    return new CheckpointsOnDisk(this.root, this.routed, this.disk, this.full(prefix.replace(/^\/+|\/+$/g, '')));
  }
}

/** In --out: a run's working folder (its checkpoints, and its results until they are swapped in). */
const incomingDir = (out: string, runId: string): string => join(out, `.incoming-${runId}`);
const INCOMING = /^\.incoming-/;
/** In a working folder: what the checkpoints were trained on, the results being built. */
const INPUTS_FILE = 'inputs.json';
const STAGED = 'out';
/** In --out: the files the last successful run put there, so that the next one removes those it does not write. */
const MANIFEST = '.rsclip-run.json';
/** In --out: the last failed run's validation.json; the results of the run before it stay untouched. */
export const FAILED_DIR = 'failed';

/**
 * What a run's checkpoints depend on beyond its id (which names captions.csv and train.json): every uploaded file
 * of the dataset, and a local base checkpoint's size and time, so that a checkpoint of other images or weights is
 * never resumed from.
 */
async function inputsDigest(created: CreatedObject[], dataset: string, init: string): Promise<string> {
  const h = createHash('sha256');
  for (const o of [...created].filter((c) => c.key.startsWith(`${datasetPrefix(dataset)}/`)).sort((a, b) => (a.key < b.key ? -1 : 1))) {
    h.update(`${o.key}\0${o.etag ?? ''}\0${o.size}\n`);
  }
  const file = await stat(init).catch(() => undefined);
  h.update(`init\0${init}\0${file?.isFile() ? `${file.size}\0${file.mtimeMs}` : ''}`);
  return h.digest('hex');
}

/** Checkpoints of an interrupted run are kept only while what they were trained on is unchanged. */
async function prepareIncoming(dir: string, digest: string, log: (line: string) => void): Promise<void> {
  const work = new FsStore(dir);
  await rm(join(dir, STAGED), { recursive: true, force: true });
  const before = await work.tryGet(INPUTS_FILE);
  const same = before !== undefined && (JSON.parse(Buffer.from(before).toString('utf8')) as { digest?: string }).digest === digest;
  if (!same && (await work.head(LATEST_CHECKPOINT))) {
    log(`train: the images or the base model changed since the interrupted run's checkpoints; starting from step 0`);
  }
  if (!same) await rm(join(dir, CHECKPOINTS), { recursive: true, force: true });
  await work.put(INPUTS_FILE, JSON.stringify({ digest }));
}

/**
 * Moves a successful run's results from its working folder into `out`, each file by one rename (latest.json, which
 * names the run, last), removes what the previous run left that this one does not write, and drops the working
 * folders and the last failure's files.
 */
async function swapIn(out: string, staged: string): Promise<void> {
  const files = (await new FsStore(staged).list()).map((o) => o.key);
  const ordered = [...files.filter((f) => f !== 'latest.json'), ...files.filter((f) => f === 'latest.json')];
  for (const f of ordered) {
    const target = join(out, ...f.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await rename(join(staged, ...f.split('/')), target);
  }
  const store = new FsStore(out);
  const previous = await store.tryGet(MANIFEST);
  if (previous) {
    const kept = new Set(files);
    for (const f of (JSON.parse(Buffer.from(previous).toString('utf8')) as { files?: string[] }).files ?? []) {
      if (!kept.has(f) && !f.split('/').includes('..')) await store.delete(f);
    }
  }
  await store.put(MANIFEST, `${JSON.stringify({ files }, null, 1)}\n`);
  await rm(join(out, FAILED_DIR), { recursive: true, force: true });
  for (const ent of await readdir(out, { withFileTypes: true })) {
    if (ent.isDirectory() && INCOMING.test(ent.name)) await rm(join(out, ent.name), { recursive: true, force: true });
  }
}

/**
 * A failed run replaces the last failure's files with its validation.json (when it got that far) and keeps its
 * checkpoints for a re-run; nothing else in `out` changes. Returns where validation.json went.
 */
async function keepFailure(out: string, dir: string, validation: Uint8Array | undefined): Promise<string | undefined> {
  const failed = join(out, FAILED_DIR);
  await rm(failed, { recursive: true, force: true });
  await rm(join(dir, STAGED), { recursive: true, force: true });
  if (!(await new FsStore(dir).head(LATEST_CHECKPOINT))) await rm(dir, { recursive: true, force: true });
  if (!validation) return undefined;
  await new FsStore(failed).put('validation.json', validation);
  return join(failed, 'validation.json');
}

/**
 * The whole pipeline on this machine: an S3 API server on loopback, the dataset uploaded as datasets/<name>/,
 * the synthesized state machine run with the real handlers and the worker on CPU (its checkpoints on disk in
 * `out`), then the published model, validation report and latest.json with a report.html swapped into `out`.
 */
export async function runLocal(o: LocalRunOptions): Promise<LocalRunResult> {
  const log = o.log ?? ((line: string) => logLine(line));
  const t0 = Date.now();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(o.data)) {
    throw new UserError(`--data ${o.data}: run uploads a local folder to its own S3 server; a dataset already in S3 runs in the deployed pipeline (or: validate/shard --data ${o.data})`);
  }
  const data = resolve(o.data);
  if (!(await stat(data).catch(() => undefined))?.isDirectory()) throw new UserError(`--data ${o.data}: not a folder`);
  if (!(await stat(resolve(data, CAPTIONS_FILE)).catch(() => undefined))?.isFile()) throw new UserError(`--data ${o.data}: has no ${CAPTIONS_FILE}`);
  const dataset = datasetNameOf(data, o.name);
  const options: TrainOptions = {
    ...(await readOptionsFile(resolve(data, TRAIN_OPTIONS_FILE), false)),
    ...(o.options ? await readOptionsFile(o.options, true) : {}),
    ...(o.model ? { init: localModelPath(o.model) } : {}),
  };
  if (!options.init) throw new UserError(`no base model: pass --model <checkpoint|random:ViT-tiny> or set "init" in ${TRAIN_OPTIONS_FILE}`);
  const init = options.init;
  const out = resolve(o.out ?? join('out', dataset));
  const outStat = await stat(out).catch(() => undefined);
  if (outStat && !outStat.isDirectory()) throw new UserError(`--out ${o.out ?? out}: not a folder`);

  const modelProblem = options.model === undefined ? undefined : modelNameProblem(options.model);
  if (modelProblem) throw new UserError(`${TRAIN_OPTIONS_FILE} model: ${modelProblem}`);
  let model: ModelChoice;
  try {
    model = chooseModel(init, options.model, 'train.json "model"');
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

    // Every upload's event, and what the checkpoints of a run of these files depend on.
    const created = await drainCreatedObjects(s3);
    const digest = await inputsDigest(created, dataset, init);
    let checkpoints = '';
    const training = trainingLog(log, () => checkpoints);
    const pipeline = new LocalPipeline({
      s3Endpoint: s3.endpoint,
      // The worker reaches the bucket as the run's role would (its own keys only); checkpoints live on this disk.
      train: async (spec, access) => {
        const dir = incomingDir(out, spec.runId);
        await prepareIncoming(dir, digest, log);
        checkpoints = join(dir, CHECKPOINTS);
        const bucket = new CheckpointsOnDisk(access.store, `${runPrefix(spec.runId)}/${CHECKPOINTS}`, new FsStore(checkpoints));
        return runTraining(spec, { bucket, log: training.event });
      },
      onEvent: stageLog(log),
    });
    const started: string[] = [];
    for (const put of created) {
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
    // On AWS these would be IAM roles and job definitions left in the account (a revoke step that failed).
    if (result.runAccessLeft.length) log(`warning: the run's access was not revoked: ${result.runAccessLeft.join(', ')}`);
    const incoming = incomingDir(out, runId);
    const validation = await s3.store.tryGet(validationKey(runId));
    if (result.status !== 'SUCCEEDED') {
      const where = await keepFailure(out, incoming, validation);
      const resumable = await readPointer(new FsStore(incoming), LATEST_CHECKPOINT).catch(() => undefined);
      throw new UserError(
        `run ${runId} failed: ${result.error?.name ?? 'unknown error'}: ${result.error?.cause ?? ''}` +
          ` (${where ? `details: ${where}; ` : ''}nothing else in ${out} changed${resumable ? `; running it again resumes training from step ${resumable.step}` : ''})`,
      );
    }

    // Built beside the previous run's results and swapped in only once complete: a run that fails on the way
    // (here, or killed) leaves them as they were.
    const staged = new FsStore(join(incoming, STAGED));
    if (validation) await staged.put('validation.json', validation);
    await copyPrefix(s3.store.child(finalPrefix(runId)), staged);
    await staged.put('latest.json', await s3.store.get(modelLatestKey(dataset)));
    log(`building ${REPORT_FILE}: embedding the validation images with the base and the fine-tuned model`);
    // The starting weights again, as the worker loaded them (same seed for a random init), for the gallery's "before".
    const params = await loadBaseModel(init, model, resolveRecipe(model.config, options).seed, { ignoreUnexpectedKeys: options.ignoreUnexpectedKeys, log: () => undefined });
    await writeReport({ out: staged, shards: s3.store.child(shardsPrefix(runId)), base: { uri: init, config: model.config, params }, runId, seconds: (Date.now() - t0) / 1000 });
    const metrics = JSON.parse(Buffer.from(await staged.get(FINAL_FILES.metrics)).toString('utf8')) as {
      steps: number;
      before: RetrievalMetrics;
      after: RetrievalMetrics;
    };
    await swapIn(out, staged.root);
    return {
      runId,
      dataset,
      out,
      report: resolve(out, REPORT_FILE),
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

export default defineCommand({
  name: 'run',
  summary: 'run the whole pipeline locally (embedded S3, the real state machine and handlers, CPU worker) on a folder',
  flags: {
    data: DATA,
    model: option('<checkpoint|random:CONFIG>', `${MODEL_HELP} (default: train.json's "init")`, z.string().optional()),
    options: FLAGS.options,
    out: option('<dir>', 'result folder (default: out/<name>)', z.string().optional()),
    name: option('<dataset>', "the dataset's name in the bucket (default: the folder's name)", z.string().optional()),
    json: FLAGS.json,
  },
  async run(f) {
    const r = await runLocal({ data: f.data, model: f.model, options: f.options, out: f.out, name: f.name });
    printResult(r, f.json);
    return 0;
  },
});
