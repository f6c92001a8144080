import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import { shardItem } from '../../core/dataset/shard-item.ts';
import type { ShardRequest } from '../../core/dataset/types.ts';
import { RunSpecSchema } from '../../core/run-spec.ts';
import { datasetPrefix, planPartsPrefix, shardsPrefix } from '../../core/s3-layout.ts';
import { handlerS3Client } from '../../core/s3-client.ts';
import { BufferPool } from '../../core/buffer-pool.ts';
import { SPLITS } from '../../core/shard-format.ts';
import { S3Store } from '../../core/store.ts';

const logger = new Logger();
const metrics = new Metrics();
/** Shard buffers kept across warm invocations. */
const buffers = new BufferPool();

const MAX_ROWS = 100_000;
/**
 * Images fetched and decoded at once: S3 reads overlap decoding. With 30 ms per request (`rsclip bench-shard
 * --s3-latency-ms 30`, 300 JPEGs), 16 gave 134-139 images/s against 109-114 for 8 and 122-131 for 24 and 32.
 */
const CONCURRENCY = 16;

const InputSchema = z
  .object({
    bucket: z.string().min(3),
    runId: RunSpecSchema.shape.runId,
    dataset: z.string().regex(/^[^/]+$/),
    shard: z.number().int().nonnegative(),
    split: z.enum(SPLITS as unknown as ['train', 'val', 'test']),
    imageSize: z.number().int().min(1).max(1024),
    bands: z.array(z.number().int().nonnegative()).length(3).optional(),
    rows: z.number().int().min(1).max(MAX_ROWS),
    part: z.object({ key: z.string().min(1), start: z.number().int().nonnegative(), end: z.number().int().positive() }).strict(),
  })
  .strict();

export interface ShardOutput {
  shard: number;
  rows: number;
  images: number;
  badRows: number;
}

/**
 * Preprocesses one plan item into runs/<runId>/shards/shard-<n>.rsshard and its summary shard-<n>.json (the
 * unreadable images it found, which Collect merges into the run's report). Bad images never fail the item:
 * the run's policy decides at Collect; a failed read does, so the Map retries it.
 */
export async function handler(event: ShardRequest): Promise<ShardOutput> {
  const input = InputSchema.parse(event) as ShardRequest;
  const plan = `${planPartsPrefix(input.runId)}/`;
  const { part } = input;
  if (!part.key.startsWith(plan) || part.key.includes('..') || part.end <= part.start) {
    throw new Error(`plan part ${part.key} (${part.start}-${part.end}) is not a range of this run's plan (${plan})`);
  }
  const started = performance.now();
  const bucket = new S3Store(input.bucket, '', handlerS3Client());
  try {
    const summary = await shardItem(
      input,
      { plan: bucket, images: bucket.child(datasetPrefix(input.dataset)), shards: bucket.child(shardsPrefix(input.runId)) },
      { concurrency: CONCURRENCY, allocate: (n) => buffers.take(n), release: (b) => buffers.release(b) },
    );
    const out = { shard: summary.shard, rows: summary.rows, images: summary.images, badRows: summary.badRows };
    const seconds = (performance.now() - started) / 1000;
    metrics.addDimension('dataset', input.dataset);
    metrics.addMetric('ImagesSharded', MetricUnit.Count, out.images);
    metrics.addMetric('ImagesUnreadable', MetricUnit.Count, summary.badImages);
    metrics.addMetric('ImagesPerSecond', MetricUnit.CountPerSecond, out.images / seconds);
    logger.info('shard written', { runId: input.runId, ...out, seconds });
    return out;
  } finally {
    metrics.publishStoredMetrics();
  }
}
