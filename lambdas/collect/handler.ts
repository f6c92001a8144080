import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import { collectShards } from '../../core/dataset/collect.ts';
import { DatasetInvalid, type ValidationReport } from '../../core/dataset/types.ts';
import { RunSpecSchema } from '../../core/run-spec.ts';
import { handlerS3Client } from '../../core/s3-client.ts';
import { shardsPrefix, validationKey } from '../../core/s3-layout.ts';
import { S3Store } from '../../core/store.ts';

const logger = new Logger();
const metrics = new Metrics();

const InputSchema = z
  .object({
    bucket: z.string().min(3),
    runId: RunSpecSchema.shape.runId,
    dataset: z.string().regex(/^[^/]+$/),
    shards: z.number().int().min(1).max(10_000_000),
  })
  .strict();
export type CollectInput = z.infer<typeof InputSchema>;

export interface CollectOutput {
  rows: number;
  images: number;
  shards: number;
  badRows: number;
}

/**
 * After the Shard map: merges each item's summary into runs/<runId>/validation.json (now with every image
 * decoded), fails the run with DatasetInvalid when the images' problems break the policy, and otherwise writes
 * the shards' index.json for the worker.
 */
export async function handler(event: CollectInput): Promise<CollectOutput> {
  const input = InputSchema.parse(event);
  const bucket = new S3Store(input.bucket, '', handlerS3Client());
  try {
    const before = JSON.parse(Buffer.from(await bucket.get(validationKey(input.runId))).toString('utf8')) as ValidationReport;
    const { report, index } = await collectShards(bucket.child(shardsPrefix(input.runId)), before, input.shards);
    await bucket.put(validationKey(input.runId), `${JSON.stringify(report, null, 1)}\n`);
    metrics.addDimension('dataset', input.dataset);
    metrics.addMetric('BadRows', MetricUnit.Count, report.counts.badRows);
    logger.info('collected', { runId: input.runId, valid: report.valid, summary: report.summary, counts: report.counts });
    if (!report.valid || !index) {
      metrics.addMetric('DatasetsInvalid', MetricUnit.Count, 1);
      throw new DatasetInvalid(report.summary);
    }
    return { rows: report.counts.goodRows, images: report.counts.goodImages, shards: index.shards.length, badRows: report.counts.badRows };
  } finally {
    metrics.publishStoredMetrics();
  }
}
