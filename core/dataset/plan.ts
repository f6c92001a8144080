import { z } from 'zod';
import { SPLITS, type Split } from '../shard-format.ts';
import type { ObjectStore } from '../store.ts';
import { hash64 } from './key-table.ts';
import { filenameProblem, MAX_CAPTION_CHARS } from './rules.ts';
import type { DatasetRow, PlanPart } from './types.ts';
import { issueLine } from '../schema-issue.ts';

/**
 * How rows become shards without holding them: an image's shard is a function of its filename's hash and split
 * alone, so every caption of an image lands in the same shard wherever it is in the CSV, each shard holds one
 * split (evaluation reads only val/test shards), and shards mix the CSV's classes. Validate counts good rows per
 * hash bucket in its first pass over the CSV; the cuts below turn those counts into shards of about `shardSize`
 * rows; its second pass appends each row to its shard's spill buffer.
 */
export const BUCKET_BITS = 20;
const BUCKETS = 2 ** BUCKET_BITS;
/**
 * Rows buffered before a spill object is written (and as much again while it is ordered): Validate's memory for
 * the plan at any CSV size. The spills are merged into one object afterwards, a pass over the plan per level.
 */
export const SPILL_BYTES = 16 * 1024 * 1024;

export const bucketOf = (filename: string): number => hash64(filename)[0] >>> (32 - BUCKET_BITS);

/** Good rows per split and hash bucket, counted in Validate's first pass. */
export class BucketCounts {
  readonly counts: Record<Split, Uint32Array> = { train: new Uint32Array(BUCKETS), val: new Uint32Array(BUCKETS), test: new Uint32Array(BUCKETS) };
  add(split: Split, filename: string): void {
    this.counts[split][bucketOf(filename)]!++;
  }
}

export interface ShardCuts {
  /** Per split, the shard of each bucket (-1: no rows). */
  shardOf: Record<Split, Int32Array>;
  shards: { split: Split; rows: number }[];
}

/** Consecutive buckets of each split, cut where adding the next would pass `shardSize` rows; train shards first. */
export function cutShards(buckets: BucketCounts, shardSize: number): ShardCuts {
  const shards: ShardCuts['shards'] = [];
  const shardOf = {} as Record<Split, Int32Array>;
  for (const split of SPLITS) {
    const counts = buckets.counts[split];
    const of = new Int32Array(BUCKETS).fill(-1);
    let rows = 0;
    for (let b = 0; b < BUCKETS; b++) {
      const n = counts[b]!;
      if (n === 0) continue;
      if (rows > 0 && rows + n > shardSize) {
        shards[shards.length - 1]!.rows = rows;
        rows = 0;
      }
      if (rows === 0) shards.push({ split, rows: 0 });
      of[b] = shards.length - 1;
      rows += n;
    }
    if (rows > 0) shards[shards.length - 1]!.rows = rows;
    shardOf[split] = of;
  }
  return { shardOf, shards };
}

/**
 * Validate's second pass: rows appended as JSON lines to one buffer and written, SPILL_BYTES at a time, as one
 * object with the shards in order (a stable counting sort). finish() then merges the spills, MERGE_FAN_IN at a
 * time, into one object in shard order, so that every shard's rows are one byte range of it: an item stays one
 * range whatever the dataset size. Held per row: its bytes and 8 bytes of position; per spill, a size per shard.
 */
export class PlanSpill {
  private arena: Buffer;
  private used = 0;
  private count = 0;
  private shardOf: Int32Array = new Int32Array(1 << 16);
  private startOf: Int32Array = new Int32Array(1 << 16);
  private runs: Run[] = [];
  private objects = 0;

  constructor(
    private readonly store: ObjectStore,
    /** Plan object keys: `${prefix}/rows-<n>.jsonl`, relative to `store`. */
    private readonly prefix: string,
    private readonly shards: number,
    private readonly spillBytes = SPILL_BYTES,
  ) {
    // Pages are only resident once written: a small plan touches only what it uses.
    this.arena = Buffer.allocUnsafeSlow(spillBytes);
  }

  async add(shard: number, row: DatasetRow): Promise<void> {
    const line = `${JSON.stringify(row)}\n`;
    const n = Buffer.byteLength(line);
    if (n > this.spillBytes) throw new Error(`plan row of line ${row.line} is ${n} bytes, over the spill size ${this.spillBytes}`);
    if (this.used + n > this.spillBytes) await this.spill();
    if (this.count === this.shardOf.length) {
      this.shardOf = grow(this.shardOf);
      this.startOf = grow(this.startOf);
    }
    this.shardOf[this.count] = shard;
    this.startOf[this.count++] = this.used;
    this.used += this.arena.write(line, this.used);
  }

  /** Every row added is in one object; each shard's byte range of it. */
  async finish(): Promise<PlanPart[]> {
    await this.spill();
    while (this.runs.length > 1) {
      const merged: Run[] = [];
      for (let i = 0; i < this.runs.length; i += MERGE_FAN_IN) merged.push(await this.merge(this.runs.slice(i, i + MERGE_FAN_IN)));
      this.runs = merged;
    }
    const run = this.runs[0];
    const parts: PlanPart[] = [];
    let offset = 0;
    for (let s = 0; s < this.shards; s++) {
      const n = run?.sizes[s] ?? 0;
      parts.push({ key: run?.key ?? '', start: offset, end: offset + n });
      offset += n;
    }
    return parts;
  }

  private nextKey(): string {
    return `${this.prefix}/rows-${String(this.objects++).padStart(4, '0')}.jsonl`;
  }

  private async spill(): Promise<void> {
    if (this.count === 0) return;
    const sizes = new Float64Array(this.shards);
    const end = (r: number): number => (r + 1 < this.count ? this.startOf[r + 1]! : this.used);
    for (let r = 0; r < this.count; r++) sizes[this.shardOf[r]!]! += end(r) - this.startOf[r]!;
    const at = new Float64Array(this.shards);
    for (let s = 1; s < this.shards; s++) at[s] = at[s - 1]! + sizes[s - 1]!;
    const out = Buffer.allocUnsafe(this.used);
    for (let r = 0; r < this.count; r++) {
      const s = this.shardOf[r]!;
      at[s]! += this.arena.copy(out, at[s]!, this.startOf[r]!, end(r));
    }
    this.count = 0;
    this.used = 0;
    const key = this.nextKey();
    await this.store.put(key, out);
    this.runs.push({ key, sizes });
  }

  /** Streams runs (each in shard order) into one: shard by shard, each run's bytes of that shard in turn. */
  private async merge(runs: Run[]): Promise<Run> {
    const key = this.nextKey();
    const sizes = new Float64Array(this.shards);
    for (const r of runs) for (let s = 0; s < this.shards; s++) sizes[s]! += r.sizes[s]!;
    const readers = runs.map((r) => new ByteReader(this.store.stream(r.key)[Symbol.asyncIterator]()));
    const shards = this.shards;
    async function* body(): AsyncGenerator<Uint8Array> {
      for (let s = 0; s < shards; s++) for (const [i, r] of runs.entries()) if (r.sizes[s]! > 0) yield* readers[i]!.read(r.sizes[s]!);
    }
    await this.store.put(key, body());
    for (const r of runs) await this.store.delete(r.key);
    return { key, sizes };
  }
}

/** One plan object in shard order: how many bytes each shard has in it. */
interface Run {
  key: string;
  sizes: Float64Array;
}

/**
 * Spills merged at once: one open stream each, well under the SDK's 50 sockets. Two levels cover 1,024 spills
 * (16 GiB of rows).
 */
const MERGE_FAN_IN = 32;

/** Exactly `n` bytes at a time from a stream of chunks, as views of the chunks (no copy). */
class ByteReader {
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  async *read(n: number): AsyncGenerator<Uint8Array> {
    while (n > 0) {
      if (this.pos === this.chunk.length) {
        const next = await this.it.next();
        if (next.done) throw new Error(`plan spill ended ${n} bytes early`);
        this.chunk = next.value;
        this.pos = 0;
      }
      const take = Math.min(n, this.chunk.length - this.pos);
      yield this.chunk.subarray(this.pos, this.pos + take);
      this.pos += take;
      n -= take;
    }
  }
}

const grow = (a: Int32Array): Int32Array => {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
};

/** A plan row as the Shard step trusts it: re-checked, since a plan object is only as safe as the bucket. */
const RowSchema = z
  .object({
    line: z.number().int().min(2),
    filename: z.string().superRefine((f, ctx) => {
      const problem = filenameProblem(f);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    caption: z.string().min(1).max(4 * MAX_CAPTION_CHARS),
    split: z.enum(SPLITS as unknown as ['train', 'val', 'test']),
    label: z.string().optional(),
  })
  .strict();

/** The rows of one shard item back from its byte range of the plan (one ranged read). */
export async function readPlanRows(store: ObjectStore, part: PlanPart): Promise<DatasetRow[]> {
  const body = await store.getRange(part.key, part.start, part.end);
  if (body.length !== part.end - part.start) throw new Error(`${part.key}: bytes ${part.start}-${part.end} are past the end of the plan part`);
  const rows: DatasetRow[] = [];
  for (const line of Buffer.from(body).toString('utf8').split('\n')) {
    if (!line) continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new Error(`${part.key}: bad plan row: not JSON (a range that cuts a row: bytes ${part.start}-${part.end})`);
    }
    const parsed = RowSchema.safeParse(json);
    if (!parsed.success) throw new Error(`${part.key}: bad plan row: ${issueLine(parsed.error)}`);
    rows.push(parsed.data);
  }
  return rows;
}
