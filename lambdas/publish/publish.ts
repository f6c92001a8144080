import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { FINAL_FILES, finalKey, finalPrefix, modelLatestKey, REQUIRED_FINAL_FILES } from '../../core/s3-layout.ts';
import type { ObjectStore } from '../../core/store.ts';

export interface PublishInput {
  runId: string;
  bucket: string;
  dataset: string;
  /** The execution's input (`$$.Execution.Input`, from the trigger): the captions.csv version the run read. */
  trigger?: { key: string; versionId?: string };
  /** The execution's start (`$$.Execution.StartTime`); the time of publishing when absent. */
  startedAt?: string;
}

/**
 * Where a run stands among its dataset's runs, independent of when it finishes: runs of later data come after,
 * and of the same data (a scheduled retrain of an unchanged captions.csv), the later started.
 */
export interface RunOrder {
  runId: string;
  /** When the run's captions.csv version was uploaded; its execution's start when that version is not known. */
  dataUploadedAt: string;
  startedAt: string;
}

/** models/<dataset>/latest.json */
export interface LatestModel extends RunOrder {
  /** Key of runs/<runId>/final/model.safetensors. */
  model: string;
  sha256: string;
  metrics: Record<string, unknown> & { before: Recall; after: Recall };
  publishedAt: string;
}

/** What Publish returns: this run's entry, and the run latest.json stays on when that one is newer. */
export type Published = LatestModel & { supersededBy?: string };

interface Recall {
  mean_recall: number;
  [name: string]: unknown;
}

const MAX_METRICS_BYTES = 4 << 20;

/** A run whose final/ is missing or inconsistent; Step Functions sees this name as the error. */
export class RunIncomplete extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunIncomplete';
  }
}

function isRecall(v: unknown): v is Recall {
  return typeof v === 'object' && v !== null && typeof (v as Recall).mean_recall === 'number';
}

async function sha256OfObject(s3: S3Client, bucket: string, key: string): Promise<string> {
  const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const hash = createHash('sha256');
  // Streamed: a ViT-L/14 model is larger than the function's memory.
  for await (const chunk of res.Body as Readable) hash.update(chunk as Uint8Array);
  return hash.digest('hex');
}

const errorName = (e: unknown): string | undefined => (e as { name?: string }).name;

/** Unparseable or older-format times (a latest.json from before RunOrder) sort first. */
function time(v: unknown): number {
  const t = typeof v === 'string' ? Date.parse(v) : Number.NaN;
  return Number.isNaN(t) ? Number.NEGATIVE_INFINITY : t;
}

const order = (x: number | string, y: number | string): number => (x < y ? -1 : x > y ? 1 : 0);

/** Negative when `a` is the older run, 0 for the same run; the run id makes it a total order every publisher agrees on. */
function compareRuns(a: Partial<Record<keyof RunOrder, unknown>>, b: RunOrder): number {
  return (
    order(time(a.dataUploadedAt), time(b.dataUploadedAt)) ||
    order(time(a.startedAt), time(b.startedAt)) ||
    order(String(a.runId ?? ''), b.runId)
  );
}

/**
 * The upload time of the captions.csv version the run read. Undefined without a version id (an unversioned
 * bucket, where the current object may be a later upload) or when that version is gone.
 */
async function captionsUploadedAt(s3: S3Client, bucket: string, trigger: PublishInput['trigger']): Promise<Date | undefined> {
  if (!trigger?.versionId) return undefined;
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: trigger.key, VersionId: trigger.versionId }));
    return head.LastModified;
  } catch (e) {
    if (errorName(e) === 'NotFound') return undefined;
    throw e;
  }
}

/** latest.json's ETag and, when it parses, its entry. */
async function readLatest(s3: S3Client, bucket: string, key: string): Promise<{ etag: string; entry?: Record<string, unknown> } | undefined> {
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!res.ETag) throw new Error(`s3://${bucket}/${key} came without an ETag`);
    const text = await res.Body!.transformToString();
    try {
      const entry: unknown = JSON.parse(text);
      return { etag: res.ETag, entry: typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>) : undefined };
    } catch {
      return { etag: res.ETag };
    }
  } catch (e) {
    if (errorName(e) === 'NoSuchKey') return undefined;
    throw e;
  }
}

/** A round fails only when another publisher's write landed in between: N publishers at once need N rounds at most. */
const MAX_WRITE_ROUNDS = 10;

/**
 * Writes `latest` to `key` unless the entry there is of a newer run (which it returns): read, compare, then a
 * PutObject conditional on what was read (If-Match its ETag, If-None-Match when there was none), again from the
 * read when another publisher wrote in between (412) or was writing at once (409).
 */
async function moveForward(s3: S3Client, bucket: string, key: string, latest: LatestModel): Promise<string | undefined> {
  for (let round = 1; ; round++) {
    const current = await readLatest(s3, bucket, key);
    if (current?.entry && compareRuns(current.entry, latest) > 0) return String(current.entry.runId);
    try {
      await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: `${JSON.stringify(latest, null, 2)}\n`,
          ContentType: 'application/json',
          ...(current ? { IfMatch: current.etag } : { IfNoneMatch: '*' }),
        }),
      );
      return undefined;
    } catch (e) {
      const conflict = errorName(e) === 'PreconditionFailed' || errorName(e) === 'ConditionalRequestConflict';
      if (!conflict || round === MAX_WRITE_ROUNDS) throw e;
      // Jittered, so publishers that collided do not collide again.
      await sleep(Math.random() * 50 * round);
    }
  }
}

/**
 * Checks runs/<runId>/final/ (every file present and non-empty, metrics.json well formed, model.safetensors
 * hashing to the sha256 the worker recorded) and points models/<dataset>/latest.json at it, unless latest.json
 * already names a newer run (compareRuns): runs finish in any order, and the last to finish is not the newest.
 */
export async function publishRun(input: PublishInput, store: ObjectStore, s3: S3Client, now = new Date()): Promise<Published> {
  const { runId, bucket, dataset } = input;
  const final = finalPrefix(runId);
  const listed = new Map((await store.list(`${final}/`)).map((o) => [o.key, o.size]));
  const missing = REQUIRED_FINAL_FILES.filter((f) => !listed.get(finalKey(runId, f)));
  if (missing.length) throw new RunIncomplete(`s3://${bucket}/${final}/ lacks ${missing.join(', ')} (or they are empty)`);

  const metricsKey = finalKey(runId, FINAL_FILES.metrics);
  if (listed.get(metricsKey)! > MAX_METRICS_BYTES) throw new RunIncomplete(`${metricsKey} is over ${MAX_METRICS_BYTES} bytes`);
  let metrics: Record<string, unknown>;
  try {
    metrics = JSON.parse(new TextDecoder().decode(await store.get(metricsKey)));
  } catch (e) {
    throw new RunIncomplete(`${metricsKey} is not JSON: ${(e as Error).message}`);
  }
  const { before, after } = metrics;
  if (!isRecall(before) || !isRecall(after)) throw new RunIncomplete(`${metricsKey} lacks before/after.mean_recall`);

  const model = finalKey(runId, FINAL_FILES.model);
  const sha256 = await sha256OfObject(s3, bucket, model);
  if (typeof metrics.sha256 === 'string' && metrics.sha256 !== sha256) {
    throw new RunIncomplete(`${model} hashes to ${sha256}, but metrics.json records ${metrics.sha256}`);
  }
  const startedAt = input.startedAt ?? now.toISOString();
  const latest: LatestModel = {
    runId,
    // Without the version, the start stands in: the trigger starts a run seconds after its upload.
    dataUploadedAt: (await captionsUploadedAt(s3, bucket, input.trigger))?.toISOString() ?? startedAt,
    startedAt,
    model,
    sha256,
    metrics: { model: metrics.model, steps: metrics.steps, before, after, ...(metrics.test ? { test: metrics.test } : {}) },
    publishedAt: now.toISOString(),
  };
  const newer = await moveForward(s3, bucket, modelLatestKey(dataset), latest);
  return newer === undefined ? latest : { ...latest, supersededBy: newer };
}
