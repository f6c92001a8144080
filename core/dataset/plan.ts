import { z } from 'zod';
import { SPLITS, type Split } from '../shard-format.ts';
import type { ObjectStore } from '../store.ts';
import { hash64 } from './key-table.ts';
import { filenameProblem, MAX_CAPTION_CHARS } from './rules.ts';
import type { DatasetRow, PlanPart } from './types.ts';

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
 * Rows buffered before a spill object is written. Each shard item reads one range per spill, so fewer, larger
 * spills mean fewer GETs per item; 64 MiB keeps Validate's buffer well inside its memory at any CSV size.
 */
export const SPILL_BYTES = 64 * 1024 * 1024;

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
 * object with the shards in order (a stable counting sort), so each shard's rows of one spill are one byte range.
 * Held per row: its bytes and 12 bytes of position, no string or object (Validate's memory stays the spill's).
 */
export class PlanSpill {
  private arena: Buffer;
  private used = 0;
  private count = 0;
  private shardOf: Int32Array = new Int32Array(1 << 16);
  private startOf: Int32Array = new Int32Array(1 << 16);
  private spills = 0;
  readonly parts: PlanPart[][];

  constructor(
    private readonly store: ObjectStore,
    /** Spill object keys: `${prefix}/rows-<n>.jsonl`, relative to `store`. */
    private readonly prefix: string,
    private readonly shards: number,
    private readonly spillBytes = SPILL_BYTES,
  ) {
    this.parts = Array.from({ length: shards }, () => []);
    // Pages are only resident once written: a small plan touches only what it uses.
    this.arena = Buffer.allocUnsafeSlow(spillBytes);
  }

  async add(shard: number, row: DatasetRow): Promise<void> {
    const line = `${JSON.stringify(row)}\n`;
    const n = Buffer.byteLength(line);
    if (n > this.spillBytes) throw new Error(`plan row of line ${row.line} is ${n} bytes, over the spill size ${this.spillBytes}`);
    if (this.used + n > this.spillBytes) await this.flush();
    if (this.count === this.shardOf.length) {
      this.shardOf = grow(this.shardOf);
      this.startOf = grow(this.startOf);
    }
    this.shardOf[this.count] = shard;
    this.startOf[this.count++] = this.used;
    this.used += this.arena.write(line, this.used);
  }

  async flush(): Promise<void> {
    if (this.count === 0) return;
    const key = `${this.prefix}/rows-${String(this.spills++).padStart(4, '0')}.jsonl`;
    const bytes = new Float64Array(this.shards + 1);
    const end = (r: number): number => (r + 1 < this.count ? this.startOf[r + 1]! : this.used);
    for (let r = 0; r < this.count; r++) bytes[this.shardOf[r]! + 1]! += end(r) - this.startOf[r]!;
    for (let s = 0; s < this.shards; s++) {
      if (bytes[s + 1]! > 0) this.parts[s]!.push({ key, start: bytes[s]!, end: bytes[s]! + bytes[s + 1]! });
      bytes[s + 1]! += bytes[s]!;
    }
    const out = Buffer.allocUnsafe(this.used);
    for (let r = 0; r < this.count; r++) {
      const s = this.shardOf[r]!;
      bytes[s]! += this.arena.copy(out, bytes[s]!, this.startOf[r]!, end(r));
    }
    this.count = 0;
    this.used = 0;
    await this.store.put(key, out);
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

/** The rows of one shard item back from its parts (one ranged read per spill). */
export async function readPlanRows(store: ObjectStore, parts: readonly PlanPart[]): Promise<DatasetRow[]> {
  const bodies = await Promise.all(parts.map((p) => store.getRange(p.key, p.start, p.end)));
  const rows: DatasetRow[] = [];
  for (const [i, body] of bodies.entries()) {
    const part = parts[i]!;
    if (body.length !== part.end - part.start) throw new Error(`${part.key}: bytes ${part.start}-${part.end} are past the end of the plan part`);
    for (const line of Buffer.from(body).toString('utf8').split('\n')) {
      if (!line) continue;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        throw new Error(`${part.key}: bad plan row: not JSON (a range that cuts a row: bytes ${part.start}-${part.end})`);
      }
      const parsed = RowSchema.safeParse(json);
      if (!parsed.success) throw new Error(`${part.key}: bad plan row: ${parsed.error.issues[0]!.message}`);
      rows.push(parsed.data);
    }
  }
  return rows;
}
