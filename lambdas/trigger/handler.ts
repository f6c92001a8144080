import { createHash } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { handlerS3Client } from '../../core/s3-client.ts';
import { captionsKey, datasetOfCaptionsKey, trainOptionsKey } from '../../core/s3-layout.ts';
import { datasetOfRerunKey, runContent } from './run-id.ts';
import { STATE_MACHINE_ARN_ENV, startRun, type StartExecution, type StartResult } from './start-run.ts';

const logger = new Logger();
const metrics = new Metrics();

/** EventBridge "Object Created" from S3 (the fields used). */
export interface ObjectCreatedEvent {
  source: 'aws.s3';
  'detail-type': 'Object Created';
  /** Unique per event; a redelivery of the same event keeps it. */
  id?: string;
  detail: { bucket: { name: string }; object: { key: string; etag?: string; 'version-id'?: string; sequencer?: string } };
}

/** The retraining schedule's constant input (cdk/trigger.ts). */
export interface RetrainEvent {
  source: 'rsclip.schedule';
  bucket: string;
  datasets: string[];
  time: string;
}

export type TriggerEvent = ObjectCreatedEvent | RetrainEvent;

async function head(s3: S3Client, bucket: string, key: string) {
  return s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).catch((e: unknown) => {
    if ((e as { name?: string }).name === 'NotFound') return undefined;
    throw e;
  });
}

const etagOf = (etag: string | undefined): string | undefined => etag?.replace(/"/g, '') || undefined;

/**
 * What names an upload's bytes, so that uploading the same captions.csv again starts no second run while any
 * change does (a versioned bucket gives every upload a new version id, so versions cannot be the key). A
 * single-part upload's ETag is the MD5 of its bytes; a multipart ETag ("...-N") depends on the part size, so
 * those uploads (the AWS CLI goes multipart from 8 MiB) are read and hashed, at the version the event names.
 */
export async function uploadContentId(s3: S3Client, bucket: string, key: string, object: ObjectCreatedEvent['detail']['object']): Promise<string> {
  const etag = etagOf(object.etag);
  if (etag && /^[0-9a-f]{32}$/i.test(etag)) return `md5:${etag.toLowerCase()}`;
  const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: object['version-id'] }));
  const hash = createHash('sha256');
  for await (const chunk of res.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/** train.json's ETag: at most 64 KiB, so always a single-part upload whose ETag is the MD5 of its bytes. */
async function optionsId(s3: S3Client, bucket: string, dataset: string): Promise<string | undefined> {
  return etagOf((await head(s3, bucket, trainOptionsKey(dataset)))?.ETag);
}

/**
 * The handler's logic with StartExecution injected: the local runner passes its own execution registry.
 *
 * The key is used as the event gives it. S3's own notifications (to SQS, SNS, Lambda) form-encode keys ("a b"
 * arrives as "a+b"), but its EventBridge events carry the key itself, so decoding (or guessing between the two
 * spellings) would confuse datasets `a b` and `a+b`.
 */
export async function trigger(event: TriggerEvent, start: StartExecution, s3: S3Client = handlerS3Client()): Promise<StartResult[]> {
  if (event.source === 'rsclip.schedule') {
    const results: StartResult[] = [];
    for (const dataset of event.datasets) {
      const key = captionsKey(dataset);
      // A dataset that is gone must not keep the others from retraining.
      const [found, options] = await Promise.all([head(s3, event.bucket, key), optionsId(s3, event.bucket, dataset)]);
      if (!found) {
        results.push({ status: 'ignored', key });
        continue;
      }
      // The tick's time makes each period a new run; a redelivered tick still maps to the same one.
      const content = runContent({ captions: found.VersionId ?? etagOf(found.ETag) ?? '', options, tick: event.time });
      results.push(await startRun(start, event.bucket, key, content, found.VersionId));
    }
    return results;
  }
  const { bucket, object } = event.detail;
  const key = object.key;
  const uploaded = datasetOfCaptionsKey(key);
  if (uploaded !== undefined) {
    // A captions.csv that is gone again (or a key spelled as no object is) would only fail at Validate.
    const [found, options] = await Promise.all([head(s3, bucket.name, key), optionsId(s3, bucket.name, uploaded)]);
    if (!found) return [{ status: 'ignored', key }];
    const content = runContent({ captions: await uploadContentId(s3, bucket.name, key, object), options });
    return [await startRun(start, bucket.name, key, content, object['version-id'])];
  }
  const rerun = datasetOfRerunKey(key);
  if (rerun !== undefined) {
    const csv = captionsKey(rerun);
    const [found, options] = await Promise.all([head(s3, bucket.name, csv), optionsId(s3, bucket.name, rerun)]);
    if (!found) return [{ status: 'ignored', key }];
    // Each write of the marker is its own run; a redelivered event of the same write is the same one. The
    // versioned bucket gives every write a version id; the sequencer and the event id stand in without one.
    const write = object['version-id'] ?? object.sequencer ?? event.id ?? etagOf(object.etag) ?? '';
    const content = runContent({ captions: found.VersionId ?? etagOf(found.ETag) ?? '', options, rerun: write });
    return [await startRun(start, bucket.name, csv, content, found.VersionId)];
  }
  return [{ status: 'ignored', key }];
}

const sfn = new SFNClient({});

const startExecution: StartExecution = async (name, input) => {
  const stateMachineArn = process.env[STATE_MACHINE_ARN_ENV];
  if (!stateMachineArn) throw new Error(`${STATE_MACHINE_ARN_ENV} is not set`);
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
