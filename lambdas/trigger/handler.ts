import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { makeS3Client } from '../../core/s3-client.ts';
import { captionsKey } from '../../core/s3-layout.ts';
import { startRun, type StartExecution, type StartResult } from './start-run.ts';

const logger = new Logger();
const metrics = new Metrics();

/** EventBridge "Object Created" from S3 (the fields used). */
export interface ObjectCreatedEvent {
  source: 'aws.s3';
  'detail-type': 'Object Created';
  detail: { bucket: { name: string }; object: { key: string; etag?: string; 'version-id'?: string } };
}

/** The retraining schedule's constant input (cdk/trigger.ts). */
export interface RetrainEvent {
  source: 'rsclip.schedule';
  bucket: string;
  datasets: string[];
  time: string;
}

export type TriggerEvent = ObjectCreatedEvent | RetrainEvent;

/** The handler's logic with StartExecution injected: the local runner passes its own execution registry. */
export async function trigger(event: TriggerEvent, start: StartExecution): Promise<StartResult[]> {
  if (event.source === 'rsclip.schedule') {
    const s3 = makeS3Client();
    const results: StartResult[] = [];
    for (const dataset of event.datasets) {
      const key = captionsKey(dataset);
      const head = await s3.send(new HeadObjectCommand({ Bucket: event.bucket, Key: key })).catch((e: unknown) => {
        // A dataset that is gone must not keep the others from retraining.
        if ((e as { name?: string }).name === 'NotFound') return undefined;
        throw e;
      });
      if (!head) {
        results.push({ status: 'ignored', key });
        continue;
      }
      // The tick's time makes each period a new run; a redelivered tick still maps to the same one.
      const version = `${head.VersionId ?? head.ETag ?? ''}@${event.time}`;
      results.push(await startRun(start, event.bucket, key, version));
    }
    return results;
  }
  const { bucket, object } = event.detail;
  const version = object['version-id'] ?? object.etag;
  if (!version) throw new Error(`Object Created event for s3://${bucket.name}/${object.key} has neither version-id nor etag`);
  return [await startRun(start, bucket.name, object.key, version)];
}

const sfn = new SFNClient({});

const startExecution: StartExecution = async (name, input) => {
  const stateMachineArn = process.env.STATE_MACHINE_ARN;
  if (!stateMachineArn) throw new Error('STATE_MACHINE_ARN is not set');
  await sfn.send(new StartExecutionCommand({ stateMachineArn, name, input }));
};

export async function handler(event: TriggerEvent): Promise<StartResult[]> {
  try {
    const results = await trigger(event, startExecution);
    for (const r of results) {
      logger.info('trigger', { ...r });
      metrics.addMetric(r.status === 'started' ? 'RunsStarted' : r.status === 'duplicate' ? 'DuplicateEvents' : 'IgnoredKeys', MetricUnit.Count, 1);
    }
    return results;
  } finally {
    metrics.publishStoredMetrics();
  }
}
