import { createHash } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { handlerS3Client } from '../../core/s3-client.ts';
import { captionsKey, datasetOfCaptionsKey } from '../../core/s3-layout.ts';
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

async function head(s3: S3Client, bucket: string, key: string) {
  return s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).catch((e: unknown) => {
    if ((e as { name?: string }).name === 'NotFound') return undefined;
    throw e;
  });
}

/** `application/x-www-form-urlencoded` decoding; undefined when `key` is not valid encoding. */
function formDecode(key: string): string | undefined {
  try {
    return decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/**
 * The object an event's key names. S3 form-encodes keys in its event notifications ("my data" arrives as
 * "my+data"); EventBridge's documentation does not say whether its copy is encoded, so a key that could be
 * encoded is looked up as given first and then decoded. Undefined when neither exists.
 */
export async function eventObjectKey(s3: S3Client, bucket: string, key: string): Promise<string | undefined> {
  if (!/[+%]/.test(key)) return key;
  const decoded = formDecode(key);
  for (const candidate of decoded !== undefined && decoded !== key ? [key, decoded] : [key]) {
    if (await head(s3, bucket, candidate)) return candidate;
  }
  return undefined;
}

/**
 * What names an upload's bytes, so that uploading the same captions.csv again starts no second run while any
 * change does (a versioned bucket gives every upload a new version id, so versions cannot be the key). A
 * single-part upload's ETag is the MD5 of its bytes; a multipart ETag ("...-N") depends on the part size, so
 * those uploads (the AWS CLI goes multipart from 8 MiB) are read and hashed, at the version the event names.
 */
export async function uploadContentId(s3: S3Client, bucket: string, key: string, object: ObjectCreatedEvent['detail']['object']): Promise<string> {
  const etag = object.etag?.replace(/"/g, '');
  if (etag && /^[0-9a-f]{32}$/i.test(etag)) return `md5:${etag.toLowerCase()}`;
  const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: object['version-id'] }));
  const hash = createHash('sha256');
  for await (const chunk of res.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/** The handler's logic with StartExecution injected: the local runner passes its own execution registry. */
export async function trigger(event: TriggerEvent, start: StartExecution): Promise<StartResult[]> {
  if (event.source === 'rsclip.schedule') {
    const s3 = handlerS3Client();
    const results: StartResult[] = [];
    for (const dataset of event.datasets) {
      const key = captionsKey(dataset);
      // A dataset that is gone must not keep the others from retraining.
      const found = await head(s3, event.bucket, key);
      if (!found) {
        results.push({ status: 'ignored', key });
        continue;
      }
      // The tick's time makes each period a new run; a redelivered tick still maps to the same one.
      const version = `${found.VersionId ?? found.ETag ?? ''}@${event.time}`;
      results.push(await startRun(start, event.bucket, key, version, found.VersionId));
    }
    return results;
  }
  const { bucket, object } = event.detail;
  const s3 = handlerS3Client();
  const key = await eventObjectKey(s3, bucket.name, object.key);
  if (key === undefined || datasetOfCaptionsKey(key) === undefined) return [{ status: 'ignored', key: key ?? object.key }];
  return [await startRun(start, bucket.name, key, await uploadContentId(s3, bucket.name, key, object), object['version-id'])];
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
