import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, readdir, realpath, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { makeS3Client } from './s3-client.ts';

export interface ObjectInfo {
  /** Key relative to the store's root, always with `/` separators. */
  key: string;
  size: number;
  etag?: string;
}

/**
 * The one storage abstraction of the project: a root that is either an S3 prefix or a local folder.
 * Every writer publishes atomically (temporary key, then rename/copy), so a reader never sees half an object.
 */
export interface ObjectStore {
  readonly uri: string;
  get(key: string): Promise<Uint8Array>;
  /** undefined when the object does not exist. */
  tryGet(key: string): Promise<Uint8Array | undefined>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object under `prefix` (relative keys), paginated for the caller. */
  list(prefix?: string): Promise<ObjectInfo[]>;
  /** The same objects one at a time, a page in memory at most: listings of millions of images stay bounded. */
  listEach(prefix?: string): AsyncIterable<ObjectInfo>;
  /** The object as a stream of chunks (a CSV larger than memory is read this way). */
  stream(key: string): AsyncIterable<Uint8Array>;
  /** Bytes [start, end) of the object (a ranged GET on S3); shorter when the object ends first. */
  getRange(key: string, start: number, end: number): Promise<Uint8Array>;
  /** Atomic publish: written to a temporary key first, then moved into place. A streamed body is never held whole. */
  put(key: string, body: Body): Promise<void>;
  delete(key: string): Promise<void>;
  /** A store rooted below this one. */
  child(prefix: string): ObjectStore;
}

/** An object's bytes: whole, or as parts written in order (views of arrays the caller holds, or a stream). */
export type Body = Uint8Array | string | readonly Uint8Array[] | AsyncIterable<Uint8Array>;

export const TMP_SEGMENT = '_tmp';

function cleanKey(key: string): string {
  const k = key.replace(/^\/+/, '');
  if (k.split('/').some((p) => p === '..')) throw new Error(`key escapes its store: ${key}`);
  return k;
}

function joinKey(prefix: string, key: string): string {
  if (!prefix) return key;
  return prefix.endsWith('/') ? prefix + key : `${prefix}/${key}`;
}

export class S3Store implements ObjectStore {
  constructor(
    readonly bucket: string,
    readonly prefix: string,
    readonly client: S3Client = makeS3Client(),
    /** Bucket keys read at a fixed version (a run reads the captions.csv version that started it). */
    readonly pins: ReadonlyMap<string, string> = new Map(),
  ) {}

  get uri(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  /** This store, reading `versions` (keys relative to it) at those version ids. */
  pinned(versions: Iterable<readonly [key: string, versionId: string]>): S3Store {
    const pins = new Map(this.pins);
    for (const [key, versionId] of versions) pins.set(this.full(key), versionId);
    return new S3Store(this.bucket, this.prefix, this.client, pins);
  }

  private full(key: string): string {
    return joinKey(this.prefix, cleanKey(key));
  }

  async get(key: string): Promise<Uint8Array> {
    const got = await this.tryGet(key);
    if (!got) throw new Error(`object not found: ${this.uri.replace(/\/$/, '')}/${key}`);
    return got;
  }

  async tryGet(key: string): Promise<Uint8Array | undefined> {
    try {
      const full = this.full(key);
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: full, VersionId: this.pins.get(full) }));
      return await res.Body!.transformToByteArray();
    } catch (e) {
      if (e instanceof NoSuchKey || (e as { name?: string }).name === 'NoSuchKey') return undefined;
      throw e;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const full = this.full(key);
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: full, VersionId: this.pins.get(full) }));
      return { key, size: res.ContentLength ?? 0, etag: res.ETag };
    } catch (e) {
      const name = (e as { name?: string }).name;
      if (e instanceof NotFound || name === 'NotFound' || name === 'NoSuchKey') return undefined;
      throw e;
    }
  }

  async list(prefix = ''): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    for await (const o of this.listEach(prefix)) out.push(o);
    return out;
  }

  async *listEach(prefix = ''): AsyncGenerator<ObjectInfo> {
    const base = this.prefix ? (this.prefix.endsWith('/') ? this.prefix : `${this.prefix}/`) : '';
    let token: string | undefined;
    do {
      const res = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base + cleanKey(prefix), ContinuationToken: token }),
      );
      for (const o of res.Contents ?? []) yield { key: o.Key!.slice(base.length), size: o.Size ?? 0, etag: o.ETag };
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }

  async *stream(key: string): AsyncGenerator<Uint8Array> {
    const full = this.full(key);
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: full, VersionId: this.pins.get(full) }));
    for await (const chunk of res.Body as AsyncIterable<Uint8Array>) yield chunk;
  }

  async getRange(key: string, start: number, end: number): Promise<Uint8Array> {
    if (end <= start) return new Uint8Array(0);
    const full = this.full(key);
    const res = await this.client.send(
      new GetObjectCommand({ Bucket: this.bucket, Key: full, VersionId: this.pins.get(full), Range: `bytes=${start}-${end - 1}` }),
    );
    return res.Body!.transformToByteArray();
  }

  async put(key: string, body: Body): Promise<void> {
    const finalKey = this.full(key);
    // Staged at the bucket root whatever this store's prefix, so one lifecycle rule expires what a crash leaves.
    const tmpKey = `${TMP_SEGMENT}/${randomUUID()}/${cleanKey(key).split('/').pop()}`;
    const payload = typeof body === 'string' || body instanceof Uint8Array ? body : Readable.from(body);
    await new Upload({ client: this.client, params: { Bucket: this.bucket, Key: tmpKey, Body: payload } }).done();
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: finalKey,
          CopySource: `${this.bucket}/${tmpKey.split('/').map(encodeURIComponent).join('/')}`,
        }),
      );
    } finally {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: tmpKey }));
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.full(key) }));
  }

  child(prefix: string): ObjectStore {
    return new S3Store(this.bucket, joinKey(this.prefix, cleanKey(prefix)), this.client, this.pins);
  }
}

/** FsStore.put's staging files: `.<name>.<uuid>.tmp`. */
const STAGED = /^\..+\.[0-9a-f-]{36}\.tmp$/;

export class FsStore implements ObjectStore {
  readonly root: string;
  constructor(root: string) {
    this.root = resolve(root);
  }

  get uri(): string {
    return this.root;
  }

  private path(key: string): string {
    return join(this.root, ...cleanKey(key).split('/'));
  }

  async get(key: string): Promise<Uint8Array> {
    const got = await this.tryGet(key);
    if (!got) throw new Error(`file not found: ${this.path(key)}`);
    return got;
  }

  async tryGet(key: string): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(await readFile(this.path(key)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await stat(this.path(key));
      return s.isFile() ? { key, size: s.size } : undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async *listEach(prefix = ''): AsyncGenerator<ObjectInfo> {
    yield* await this.list(prefix);
  }

  async *stream(key: string): AsyncGenerator<Uint8Array> {
    yield* createReadStream(this.path(key)) as AsyncIterable<Uint8Array>;
  }

  async getRange(key: string, start: number, end: number): Promise<Uint8Array> {
    const fh = await open(this.path(key), 'r');
    try {
      const buf = new Uint8Array(Math.max(0, end - start));
      const { bytesRead } = await fh.read(buf, 0, buf.length, start);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }

  /**
   * Symbolic links are listed as what they point to, as `aws s3 cp --recursive` uploads them, so that a folder
   * validated here and uploaded by `rsclip run` holds the same objects; a link back into its own ancestors is
   * skipped, and a dangling one is absent.
   */
  async list(prefix = ''): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    const walk = async (dir: string, ancestors: readonly string[]): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      for (const ent of entries) {
        const p = join(dir, ent.name);
        const target = ent.isSymbolicLink() ? await stat(p).catch(() => undefined) : ent;
        if (target?.isDirectory()) {
          const real = await realpath(p);
          if (!ancestors.includes(real)) await walk(p, [...ancestors, real]);
        } else if (target?.isFile() && !STAGED.test(ent.name)) {
          const key = relative(this.root, p).split(sep).join('/');
          if (key.startsWith(prefix) && !key.startsWith(`${TMP_SEGMENT}/`)) out.push({ key, size: (await stat(p)).size });
        }
      }
    };
    await walk(this.root, [await realpath(this.root).catch(() => this.root)]);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async put(key: string, body: Body): Promise<void> {
    const target = this.path(key);
    await mkdir(dirname(target), { recursive: true });
    // Hidden, beside its target (rename stays within one directory) and never listed: a process killed before the
    // rename leaves no visible `final/*.tmp`.
    const tmp = join(dirname(target), `.${basename(target)}.${randomUUID()}.tmp`);
    await writeFile(tmp, body);
    await rename(tmp, target);
  }

  async delete(key: string): Promise<void> {
    const target = this.path(key);
    await rm(target, { force: true });
    // S3 has no folders: one whose last object went goes too, so pruned checkpoints leave no empty step-N/.
    for (let dir = dirname(target); relative(this.root, dir) && !relative(this.root, dir).startsWith('..'); dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOENT') return;
        throw e;
      }
    }
  }

  child(prefix: string): ObjectStore {
    return new FsStore(this.path(prefix));
  }
}

/** `s3://bucket/prefix` or a local folder. */
export function openStore(location: string, client?: S3Client): ObjectStore {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(location);
  if (m) return new S3Store(m[1]!, m[2]!.replace(/\/+$/, ''), client);
  return new FsStore(location);
}

export function sha256Hex(bytes: Uint8Array | string | readonly Uint8Array[]): string {
  const hash = createHash('sha256');
  for (const part of typeof bytes === 'string' || bytes instanceof Uint8Array ? [bytes] : bytes) hash.update(part);
  return hash.digest('hex');
}
