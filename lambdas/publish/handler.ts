import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { handlerS3Client } from '../../core/s3-client.ts';
import { S3Store } from '../../core/store.ts';
import { publishRun, type LatestModel, type PublishInput } from './publish.ts';

const logger = new Logger();
const metrics = new Metrics();

export async function handler(input: PublishInput): Promise<LatestModel> {
  metrics.addDimension('dataset', input.dataset);
  try {
    const latest = await publishRun(input, new S3Store(input.bucket, '', handlerS3Client()), handlerS3Client());
    logger.info('published', { runId: latest.runId, model: latest.model, sha256: latest.sha256 });
    metrics.addMetric('ModelsPublished', MetricUnit.Count, 1);
    metrics.addMetric('MeanRecallAfter', MetricUnit.Percent, latest.metrics.after.mean_recall);
    return latest;
  } catch (e) {
    logger.error('publish failed', { runId: input.runId, error: e as Error });
    metrics.addMetric('PublishFailures', MetricUnit.Count, 1);
    throw e;
  } finally {
    metrics.publishStoredMetrics();
  }
}
