import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { FsStore, S3Store, type ObjectStore } from '../store.ts';

/** The first bytes of an object, and the S3 version they came from (undefined on disk and in unversioned buckets). */
export interface ObjectHead {
  bytes: Uint8Array;
  version?: string;
}

/**
 * The first `n` bytes of an object (of its `version`, when given): a ranged GET on S3, a partial read on disk.
 * ObjectStore has no range read, so this reaches into the two store kinds; any other store falls back to a full get.
 */
export async function readHead(store: ObjectStore, key: string, n: number, version?: string): Promise<ObjectHead> {
  if (store instanceof S3Store) {
    const full = store.prefix ? `${store.prefix.replace(/\/+$/, '')}/${key}` : key;
    const res = await store.client.send(new GetObjectCommand({ Bucket: store.bucket, Key: full, Range: `bytes=0-${n - 1}`, VersionId: version }));
    return { bytes: await res.Body!.transformToByteArray(), ...(res.VersionId ? { version: res.VersionId } : {}) };
  }
  if (store instanceof FsStore) {
    const fh = await open(join(store.root, ...key.split('/')), 'r');
    try {
      const buf = new Uint8Array(n);
      const { bytesRead } = await fh.read(buf, 0, n, 0);
      return { bytes: buf.subarray(0, bytesRead) };
    } finally {
      await fh.close();
    }
  }
  return { bytes: (await store.get(key)).subarray(0, n) };
}

/** Runs `fn` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
