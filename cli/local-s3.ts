import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { startFauxqs, type FauxqsServer } from 'fauxqs';
import { notInDataset } from '../core/dataset/rules.ts';
import { CAPTIONS_FILE } from '../core/s3-layout.ts';
import { makeS3Client } from '../core/s3-client.ts';
import { FsStore, openStore, type ObjectStore } from '../core/store.ts';
import { forkModule } from './child-process.ts';
import type { Progress } from './progress.ts';

/** An S3 API server on loopback only, that the real handlers and the worker reach through the SDK. */
export interface LocalS3 {
  endpoint: string;
  bucket: string;
  /** The in-process server; absent when it runs in a process of its own. */
  server?: FauxqsServer;
  /** CPU time the server has used so far, in microseconds (user + system). */
  serverCpuMicros(): Promise<number>;
  client: S3Client;
  /** The bucket root as an ObjectStore. */
  store: ObjectStore;
  /** Stops the server and restores the environment it changed. */
  stop(): Promise<void>;
}

/** What the SDK needs to talk to the loopback server; credentials are dummies (the server checks none). */
const SDK_ENV = ['AWS_ENDPOINT_URL_S3', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION'] as const;

export interface LocalS3Options {
  /**
   * Runs the server in a child process: benchmarks then see only the client side's CPU time. The server's
   * event spy (drainCreatedObjects) is only there when it runs in this process.
   */
  separateProcess?: boolean;
  /** With separateProcess: every request waits this long before the server sees it (real S3's round trip). */
  latencyMs?: number;
  /** With separateProcess: whole-object GETs carry the CRC64NVME checksum real S3 returns (and the SDK checks). */
  checksums?: boolean;
}

interface Running {
  port: number;
  server?: FauxqsServer;
  cpuMicros(): Promise<number>;
  stop(): Promise<void>;
}

async function startInProcess(): Promise<Running> {
  const server = await startFauxqs({ host: '127.0.0.1', port: 0, logger: false, messageSpies: { bufferSize: 10_000 } });
  return {
    port: server.port,
    server,
    // Shares this process's CPU time, so it cannot be told apart.
    cpuMicros: async () => Number.NaN,
    stop: () => server.stop(),
  };
}

async function startChild(opts: LocalS3Options): Promise<Running> {
  const env = { ...process.env, RSCLIP_S3_LATENCY_MS: String(opts.latencyMs ?? 0), RSCLIP_S3_CHECKSUMS: opts.checksums ? '1' : '0' };
  const child = forkModule(new URL('./s3-server-process.ts', import.meta.url), env);
  const { port } = await child.next<{ port: number }>();
  return {
    port,
    async cpuMicros() {
      const cpu = await child.request<NodeJS.CpuUsage>('cpu');
      return cpu.user + cpu.system;
    },
    stop: () => child.stop(),
  };
}

/** A LocalS3 whose server runs in this process, with its event spy. */
export type InProcessS3 = LocalS3 & { server: FauxqsServer };

export async function startLocalS3(bucket?: string): Promise<InProcessS3>;
export async function startLocalS3(bucket: string, opts: LocalS3Options): Promise<LocalS3>;
export async function startLocalS3(bucket = 'rsclip-local', opts: LocalS3Options = {}): Promise<LocalS3> {
  const running = opts.separateProcess ? await startChild(opts) : await startInProcess();
  // An IP endpoint, not `localhost`: with a host name the SDK would address `<bucket>.localhost`.
  const endpoint = `http://127.0.0.1:${running.port}`;
  const saved = Object.fromEntries(SDK_ENV.map((k) => [k, process.env[k]]));
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
    AWS_REGION: 'us-east-1',
  });
  delete process.env.AWS_SESSION_TOKEN;
  const client = makeS3Client();
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    endpoint,
    bucket,
    server: running.server,
    serverCpuMicros: () => running.cpuMicros(),
    client,
    store: openStore(`s3://${bucket}/`, client),
    async stop() {
      client.destroy();
      await running.stop();
      for (const k of SDK_ENV) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    },
  };
}

/** Files under `dir` as `/`-separated relative keys, as `rsclip validate` lists the folder, less what no row may name. */
export async function listFolder(dir: string): Promise<string[]> {
  return (await new FsStore(dir).list()).map((o) => o.key).filter((k) => notInDataset(k) === undefined);
}

export interface UploadOptions {
  /** Objects written instead of (or besides) the folder's file of that key, e.g. a merged train.json. */
  replace?: Map<string, Uint8Array | string>;
  progress?: (total: number) => Progress;
  concurrency?: number;
}

/**
 * Uploads a local dataset folder as `<prefix>/` the way a user does with `aws s3 cp --recursive`: one PutObject per
 * file (each an "Object Created" event), everything else first and captions.csv last, because writing captions.csv
 * is what starts a run. Returns the keys written, relative to `prefix`.
 */
export async function uploadFolder(s3: LocalS3, prefix: string, dir: string, opts: UploadOptions = {}): Promise<string[]> {
  const replace = opts.replace ?? new Map<string, Uint8Array | string>();
  const files = await listFolder(dir);
  const keys = [...new Set([...files, ...replace.keys()])].sort();
  const first = keys.filter((k) => k !== CAPTIONS_FILE);
  const body = async (key: string): Promise<Uint8Array | string> => replace.get(key) ?? (await readFile(join(dir, ...key.split('/'))));
  const put = async (key: string): Promise<unknown> =>
    s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/${key}`, Body: await body(key) }));
  const progress = opts.progress?.(keys.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < first.length) {
      const key = first[next++]!;
      await put(key);
      progress?.tick();
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 8, first.length) }, worker));
  if (keys.includes(CAPTIONS_FILE)) {
    await put(CAPTIONS_FILE);
    progress?.tick();
  }
  progress?.done();
  return keys;
}

/** What S3's "Object Created" event says about a write. */
export interface CreatedObject {
  bucket: string;
  key: string;
  etag?: string;
  size: number;
}

/**
 * The writes the server saw since the last call, oldest first, as S3 would announce them to EventBridge (puts and
 * copies). A key that is already gone again (a temporary key of ObjectStore.put) is left out.
 */
export async function drainCreatedObjects(s3: InProcessS3): Promise<CreatedObject[]> {
  const events = s3.server.spy.getAllMessages();
  s3.server.spy.clear();
  const out: CreatedObject[] = [];
  for (const [i, m] of events.entries()) {
    if (m.service !== 's3' || m.bucket !== s3.bucket || (m.status !== 'uploaded' && m.status !== 'copied')) continue;
    // The server reports a copy as an upload and then a copy of the key; S3 sends one event for it.
    const next = events[i + 1];
    if (m.status === 'uploaded' && next?.status === 'copied' && next.bucket === m.bucket && next.key === m.key) continue;
    const head = await s3.store.head(m.key);
    if (head) out.push({ bucket: s3.bucket, key: m.key, etag: head.etag, size: head.size });
  }
  return out;
}
