import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { startFauxqs } from 'fauxqs';
import { createHash } from 'node:crypto';
import { openStore, type ObjectStore } from '../../../core/store.ts';

/** fauxqs in this process on 127.0.0.1, with the SDK environment the handlers read at import time. */
export async function startS3(bucket: string): Promise<{ store: ObjectStore; stop: () => Promise<void> }> {
  const server = await startFauxqs({ host: '127.0.0.1', port: 0, logger: false });
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${server.port}`,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    POWERTOOLS_METRICS_NAMESPACE: 'rsclip-test',
    POWERTOOLS_LOG_LEVEL: 'ERROR',
    POWERTOOLS_METRICS_DISABLED: 'true',
  });
  const client = new S3Client({ forcePathStyle: true, endpoint: process.env.AWS_ENDPOINT_URL_S3 });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    store: openStore(`s3://${bucket}`, client),
    stop: async () => {
      client.destroy();
      await server.stop();
    },
  };
}

export async function putAll(store: ObjectStore, prefix: string, files: Record<string, Uint8Array | string>): Promise<void> {
  await Promise.all(Object.entries(files).map(([k, v]) => store.put(`${prefix}/${k}`, v)));
}

/** key -> SHA-256 of every object under `prefix`. */
export async function checksums(store: ObjectStore, prefix: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const o of await store.list(prefix)) out[o.key] = createHash('sha256').update(await store.get(o.key)).digest('hex');
  return out;
}
