import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { FINAL, modelLatestKey, runPrefix } from '../../core/s3-layout.ts';
import type { ObjectStore } from '../../core/store.ts';

export interface PublishInput {
  runId: string;
  bucket: string;
  dataset: string;
}

/** models/<dataset>/latest.json */
export interface LatestModel {
  runId: string;
  /** Key of runs/<runId>/final/model.safetensors. */
  model: string;
  sha256: string;
  metrics: Record<string, unknown> & { before: Recall; after: Recall };
  publishedAt: string;
}

interface Recall {
  mean_recall: number;
  [name: string]: unknown;
}

/** What the worker publishes in final/ (worker/train/publish.ts); metrics.json is written last. */
export const REQUIRED_FINAL_FILES = ['model.safetensors', 'image_encoder.onnx', 'text_encoder.onnx', 'README.md', 'metrics.json'];
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

/**
 * Checks runs/<runId>/final/ (every file present and non-empty, metrics.json well formed, model.safetensors
 * hashing to the sha256 the worker recorded) and points models/<dataset>/latest.json at it.
 */
export async function publishRun(input: PublishInput, store: ObjectStore, s3: S3Client, now = new Date()): Promise<LatestModel> {
  const { runId, bucket, dataset } = input;
  const finalPrefix = `${runPrefix(runId)}/${FINAL}`;
  const listed = new Map((await store.list(`${finalPrefix}/`)).map((o) => [o.key, o.size]));
  const missing = REQUIRED_FINAL_FILES.filter((f) => !listed.get(`${finalPrefix}/${f}`));
  if (missing.length) throw new RunIncomplete(`s3://${bucket}/${finalPrefix}/ lacks ${missing.join(', ')} (or they are empty)`);

  const metricsKey = `${finalPrefix}/metrics.json`;
  if (listed.get(metricsKey)! > MAX_METRICS_BYTES) throw new RunIncomplete(`${metricsKey} is over ${MAX_METRICS_BYTES} bytes`);
  let metrics: Record<string, unknown>;
  try {
    metrics = JSON.parse(new TextDecoder().decode(await store.get(metricsKey)));
  } catch (e) {
    throw new RunIncomplete(`${metricsKey} is not JSON: ${(e as Error).message}`);
  }
  const { before, after } = metrics;
  if (!isRecall(before) || !isRecall(after)) throw new RunIncomplete(`${metricsKey} lacks before/after.mean_recall`);

  const model = `${finalPrefix}/model.safetensors`;
  const sha256 = await sha256OfObject(s3, bucket, model);
  if (typeof metrics.sha256 === 'string' && metrics.sha256 !== sha256) {
    throw new RunIncomplete(`${model} hashes to ${sha256}, but metrics.json records ${metrics.sha256}`);
  }
  const latest: LatestModel = {
    runId,
    model,
    sha256,
    metrics: { model: metrics.model, steps: metrics.steps, before, after, ...(metrics.test ? { test: metrics.test } : {}) },
    publishedAt: now.toISOString(),
  };
  await store.put(modelLatestKey(dataset), `${JSON.stringify(latest, null, 2)}\n`);
  return latest;
}
