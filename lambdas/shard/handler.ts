import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import type { ShardRequest } from '../../core/dataset.ts';
import { buildShard, type BuiltShard } from '../../core/dataset/build-shard.ts';
import { filenameProblem } from '../../core/dataset/rules.ts';
import { RunSpecSchema } from '../../core/run-spec.ts';
import { datasetPrefix, shardKey } from '../../core/s3-layout.ts';
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

const RowSchema = z
  .object({
    line: z.number().int().positive(),
    filename: z.string().superRefine((f, ctx) => {
      const problem = filenameProblem(f);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    caption: z.string().min(1),
    split: z.enum(SPLITS as [string, ...string[]]),
    label: z.string().optional(),
    version: z.string().min(1).max(1024).optional(),
  })
  .strict();

const InputSchema = z
  .object({
    bucket: z.string().min(3),
    runId: RunSpecSchema.shape.runId,
    dataset: z.string().regex(/^[^/]+$/),
    shard: z.number().int().nonnegative(),
    imageSize: z.number().int().min(1).max(1024),
    bands: z.array(z.number().int().nonnegative()).length(3).optional(),
    rows: z.array(RowSchema).min(1).max(MAX_ROWS),
  })
  .strict();

export interface ShardOutput {
  key: string;
  rows: number;
  images: number;
  sha256: string;
}

/**
 * Preprocesses one plan item into runs/<runId>/shards/shard-<n>.rsshard. The write is atomic and the key depends
 * only on the input, so a retried invocation replaces the same shard and never leaves half of one.
 */
export async function handler(event: ShardRequest): Promise<ShardOutput> {
  const input = InputSchema.parse(event) as ShardRequest;
  const started = performance.now();
  let shard: BuiltShard | undefined;
  try {
    const images = new S3Store(input.bucket, datasetPrefix(input.dataset), handlerS3Client()).pinned(
      input.rows.flatMap((r) => (r.version ? [[r.filename, r.version] as const] : [])),
    );
    shard = await buildShard(images, input.rows, {
      imageSize: input.imageSize,
      bands: input.bands,
      concurrency: CONCURRENCY,
      allocate: (n) => buffers.take(n),
    });
    const key = shardKey(input.runId, input.shard);
    await new S3Store(input.bucket, '', handlerS3Client()).put(key, shard.bytes);
    const out = { key, rows: input.rows.length, images: shard.images, sha256: shard.sha256 };
    const seconds = (performance.now() - started) / 1000;
    metrics.addDimension('dataset', input.dataset);
    metrics.addMetric('ImagesSharded', MetricUnit.Count, out.images);
    metrics.addMetric('ImagesPerSecond', MetricUnit.CountPerSecond, out.images / seconds);
    logger.info('shard written', { runId: input.runId, ...out, seconds });
    return out;
  } finally {
    if (shard) buffers.release(shard.bytes);
    metrics.publishStoredMetrics();
  }
}
