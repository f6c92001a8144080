import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { handlerS3Client } from '../../core/s3-client.ts';
import { S3Store } from '../../core/store.ts';
import { publishRun, type PublishInput, type Published } from './publish.ts';

const logger = new Logger();
const metrics = new Metrics();

export async function handler(input: PublishInput): Promise<Published> {
  metrics.addDimension('dataset', input.dataset);
  try {
    const published = await publishRun(input, new S3Store(input.bucket, '', handlerS3Client()), handlerS3Client());
    logger.info('published', { runId: published.runId, model: published.model, sha256: published.sha256 });
    if (published.supersededBy) {
      // A run of newer data finished first: this model is published but latest.json stays on that run's.
      logger.warn('published, but not latest', { runId: published.runId, latest: published.supersededBy, dataUploadedAt: published.dataUploadedAt });
      metrics.addMetric('PublishedNotLatest', MetricUnit.Count, 1);
    }
    metrics.addMetric('ModelsPublished', MetricUnit.Count, 1);
    metrics.addMetric('MeanRecallAfter', MetricUnit.Percent, published.metrics.after.mean_recall);
    return published;
  } catch (e) {
    logger.error('publish failed', { runId: input.runId, error: e as Error });
    metrics.addMetric('PublishFailures', MetricUnit.Count, 1);
    throw e;
  } finally {
    metrics.publishStoredMetrics();
  }
}
