import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import { DatasetInvalid } from '../../core/dataset/types.ts';
import { validateCaptions } from '../../core/dataset/validate.ts';
import { RunSpecSchema } from '../../core/run-spec.ts';
import { datasetOfCaptionsKey, datasetPrefix, planPartsPrefix, shardPlanKey, shardResultsPrefix, validationKey } from '../../core/s3-layout.ts';
import { handlerS3Client } from '../../core/s3-client.ts';
import { S3Store } from '../../core/store.ts';
import type { TrainOptions } from '../../core/train-options.ts';
import { initRuleFromEnv } from './init-sources.ts';

const logger = new Logger();
const metrics = new Metrics();

const InputSchema = z
  .object({
    bucket: z.string().min(3),
    key: z.string().min(1),
    runId: RunSpecSchema.shape.runId,
    /** The captions.csv version that started the run; a later upload starts its own run. */
    versionId: z.string().min(1).optional(),
  })
  .strict();
export type ValidateInput = z.infer<typeof InputSchema>;

export interface ValidateOutput {
  runId: string;
  bucket: string;
  dataset: string;
  rows: number;
  images: number;
  shards: number;
  imageSize: number;
  options: TrainOptions;
  validationKey: string;
  planKey: string;
  /** The Shard map's ResultWriter prefix. */
  shardResultsPrefix: string;
}

/**
 * Validates datasets/<name>/ (read-only; the CSV and the listing, no image is read), writes
 * runs/<runId>/validation.json, and when the dataset passes, the shard plan: its rows spilled to runs/<runId>/plan/
 * and runs/<runId>/shard-plan.json, whose items (the Shard handler inputs) name their rows by byte range. A
 * train.json `init` outside what the dataset may read (init-sources.ts) fails the run here, with the reason in
 * validation.json; `init: latest` becomes the model models/<dataset>/latest.json names (and its config), in the
 * options it returns.
 */
export async function handler(event: ValidateInput): Promise<ValidateOutput> {
  const input = InputSchema.parse(event);
  const dataset = datasetOfCaptionsKey(input.key);
  if (!dataset) throw new Error(`not a dataset captions key: ${input.key} (expected datasets/<name>/captions.csv)`);
  metrics.addDimension('dataset', dataset);
  const bucket = new S3Store(input.bucket, '', handlerS3Client(), new Map(input.versionId ? [[input.key, input.versionId]] : []));
  try {
    const { report, options, plan } = await validateCaptions(bucket.child(datasetPrefix(dataset)), dataset, {
      store: bucket,
      prefix: planPartsPrefix(input.runId),
      bucket: input.bucket,
      runId: input.runId,
    }, { init: initRuleFromEnv(input.bucket), models: bucket });
    await bucket.put(validationKey(input.runId), `${JSON.stringify(report, null, 1)}\n`);
    metrics.addMetric('BadRows', MetricUnit.Count, report.counts.badRows);
    logger.info('validated', { runId: input.runId, valid: report.valid, summary: report.summary, counts: report.counts });
    if (!report.valid) {
      metrics.addMetric('DatasetsInvalid', MetricUnit.Count, 1);
      throw new DatasetInvalid(report.summary);
    }
    await bucket.put(shardPlanKey(input.runId), JSON.stringify(plan!));
    metrics.addMetric('RowsValidated', MetricUnit.Count, report.counts.goodRows);
    return {
      runId: input.runId,
      bucket: input.bucket,
      dataset,
      rows: report.counts.goodRows,
      images: report.counts.goodImages,
      shards: plan!.length,
      imageSize: report.imageSize,
      options,
      validationKey: validationKey(input.runId),
      planKey: shardPlanKey(input.runId),
      shardResultsPrefix: shardResultsPrefix(input.runId),
    };
  } finally {
    metrics.publishStoredMetrics();
  }
}
