import { decodeShard, type Shard, type Split } from '../../core/shard-format.ts';
import { MAX_SHARD_INDEX_BYTES, SHARD_INDEX_FILE, ShardIndexFileSchema } from '../../core/shard-index.ts';
import type { ObjectStore } from '../../core/store.ts';
import { TrainInputError } from '../../core/run-errors.ts';
import { Rng } from './rng.ts';
import { issueLine } from '../../core/schema-issue.ts';

/**
 * Streams `.rsshard` files from an ObjectStore (S3 prefix or local folder) without holding the dataset: at most
 * the shard being consumed plus the one being prefetched are resident.
 */
export const SHARD_SUFFIX = '.rsshard';

/** What one pass over the shards learned: enough to plan epochs without keeping any pixels. */
export interface ShardIndex {
  keys: string[];
  imageSize: number;
  /** Caption rows per split, per shard (same order as keys). */
  rows: Record<Split, number>[];
  totals: Record<Split, number>;
  /** Per shard: the caption rows whose image is in the train split. */
  trainRows: Int32Array[];
  /** Distinct labels per split, sorted. */
  labels: Record<Split, string[]>;
}

/** Where the training stream stands: the next sample is position `sample` of the epoch's order (epochOrder). */
export interface DataCursor {
  epoch: number;
  sample: number;
}

const emptyCounts = (): Record<Split, number> => ({ train: 0, val: 0, test: 0 });

export async function listShardKeys(store: ObjectStore): Promise<string[]> {
  return (await store.list()).map((o) => o.key).filter((k) => k.endsWith(SHARD_SUFFIX)).sort();
}

export async function loadShard(store: ObjectStore, key: string): Promise<Shard> {
  const where = `${store.uri.replace(/\/$/, '')}/${key}`;
  const bytes = await store.tryGet(key);
  if (!bytes) throw new TrainInputError(`${where}: shard disappeared during the run`);
  try {
    return decodeShard(bytes, where);
  } catch (e) {
    throw new TrainInputError((e as Error).message);
  }
}

/** Yields the shards `keys[order[i]]` in turn, fetching the next one while the caller works on the current. */
export async function* prefetchShards(
  store: ObjectStore,
  keys: readonly string[],
  order: ArrayLike<number>,
  from = 0,
): AsyncGenerator<{ pos: number; index: number; shard: Shard }> {
  const fetch = (pos: number): Promise<Shard> | undefined => {
    if (pos >= order.length) return undefined;
    const p = loadShard(store, keys[order[pos]!]!);
    // A consumer that stops early leaves the last prefetch unawaited; its failure must not crash the process.
    p.catch(() => undefined);
    return p;
  };
  let next = fetch(from);
  for (let pos = from; next; pos++) {
    const shard = await next;
    next = fetch(pos + 1);
    yield { pos, index: order[pos]!, shard };
  }
}

/**
 * The index of a shards folder: from its index.json (Collect writes one per run) with one small read, else by
 * reading every shard once (folders of shards made by hand or by an older version).
 */
export async function indexShards(store: ObjectStore, keys?: string[]): Promise<ShardIndex> {
  if (!keys) {
    const info = await store.head(SHARD_INDEX_FILE);
    if (info) return readIndexFile(store, info.size);
  }
  return scanShards(store, keys ?? (await listShardKeys(store)));
}

async function readIndexFile(store: ObjectStore, size: number): Promise<ShardIndex> {
  const where = `${store.uri.replace(/\/$/, '')}/${SHARD_INDEX_FILE}`;
  if (size > MAX_SHARD_INDEX_BYTES) throw new TrainInputError(`${where} is ${size} bytes, over the limit of ${MAX_SHARD_INDEX_BYTES}`);
  let parsed;
  try {
    parsed = ShardIndexFileSchema.safeParse(JSON.parse(Buffer.from(await store.get(SHARD_INDEX_FILE)).toString('utf8')));
  } catch (e) {
    throw new TrainInputError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  if (!parsed.success) throw new TrainInputError(`${where}: ${issueLine(parsed.error)}`);
  const file = parsed.data;
  if (file.shards.length === 0) throw new TrainInputError(`${where} lists no shards`);
  const totals = emptyCounts();
  const rows = file.shards.map((s) => {
    totals[s.split] += s.rows;
    return { ...emptyCounts(), [s.split]: s.rows };
  });
  // A shard holds one split, so a train shard's train rows are all of its rows.
  const trainRows = file.shards.map((s) => (s.split === 'train' ? Int32Array.from({ length: s.rows }, (_, i) => i) : new Int32Array(0)));
  return { keys: file.shards.map((s) => s.name), imageSize: file.imageSize, rows, totals, trainRows, labels: file.labels };
}

async function scanShards(store: ObjectStore, all: string[]): Promise<ShardIndex> {
  if (all.length === 0) throw new TrainInputError(`no ${SHARD_SUFFIX} files under ${store.uri}`);
  const rows: Record<Split, number>[] = [];
  const trainRows: Int32Array[] = [];
  const totals = emptyCounts();
  const labelSets: Record<Split, Set<string>> = { train: new Set(), val: new Set(), test: new Set() };
  let imageSize = 0;
  for await (const { index, shard } of prefetchShards(store, all, all.map((_, i) => i))) {
    if (imageSize === 0) imageSize = shard.imageSize;
    else if (shard.imageSize !== imageSize) {
      throw new TrainInputError(`${all[index]}: image size ${shard.imageSize} differs from the other shards' ${imageSize}`);
    }
    const counts = emptyCounts();
    const train: number[] = [];
    for (let r = 0; r < shard.captions.length; r++) {
      const split = shard.splits[shard.captionImage[r]!]!;
      counts[split]++;
      if (split === 'train') train.push(r);
    }
    trainRows.push(Int32Array.from(train));
    shard.labels.forEach((label, i) => {
      if (label !== null) labelSets[shard.splits[i]!].add(label);
    });
    for (const s of ['train', 'val', 'test'] as const) totals[s] += counts[s];
    rows.push(counts);
  }
  const labels = {
    train: [...labelSets.train].sort(),
    val: [...labelSets.val].sort(),
    test: [...labelSets.test].sort(),
  };
  return { keys: all, imageSize, rows, totals, trainRows, labels };
}

// Salts keep the derived streams independent of each other.
const SALT_SHARD_ORDER = 1;
const SALT_ROW_ORDER = 2;
const SALT_INTERLEAVE = 4;

/**
 * Shards consumed together. Shards are often written in CSV order, which in remote-sensing datasets groups
 * images by class; drawing each batch from two shards at once keeps in-batch negatives varied while still only
 * two shards (plus the one being prefetched) are resident.
 */
export const SHUFFLE_WINDOW = 2;

/** The epoch's shard order: a permutation seeded by (seed, epoch). */
export function epochShardOrder(seed: number, epoch: number, nShards: number): Int32Array {
  return Rng.fromSeed(seed, SALT_SHARD_ORDER, epoch).permutation(nShards);
}

/** An epoch's samples in order: sample i is caption row `row[i]` of shard `shard[i]`. */
export interface EpochOrder {
  shard: Int32Array;
  row: Int32Array;
}

/**
 * Every train-split caption row once (open_clip CsvDataset semantics: each caption row is a sample), from the
 * index alone: shards in the epoch's seeded order, rows shuffled within each shard, and SHUFFLE_WINDOW shards
 * interleaved at a time (each next sample drawn uniformly from the rows the window has left). A pure function
 * of (index, seed, epoch), so a cursor is just a position.
 */
export function epochOrder(index: ShardIndex, seed: number, epoch: number): EpochOrder {
  const total = index.totals.train;
  const out: EpochOrder = { shard: new Int32Array(total), row: new Int32Array(total) };
  const pick = Rng.fromSeed(seed, SALT_INTERLEAVE, epoch);
  const pending = [...epochShardOrder(seed, epoch, index.keys.length)].filter((s) => index.trainRows[s]!.length > 0);
  const window: { shard: number; rows: Int32Array; next: number }[] = [];
  let left = 0;
  for (let i = 0; i < total; i++) {
    while (window.length < SHUFFLE_WINDOW && pending.length) {
      const shard = pending.shift()!;
      const rows = index.trainRows[shard]!;
      const perm = Rng.fromSeed(seed, SALT_ROW_ORDER, epoch, shard).permutation(rows.length);
      window.push({ shard, rows: Int32Array.from(perm, (p) => rows[p]!), next: 0 });
      left += rows.length;
    }
    let r = pick.int(left);
    let w = 0;
    for (let rest = window[0]!.rows.length - window[0]!.next; r >= rest; rest = window[w]!.rows.length - window[w]!.next) {
      r -= rest;
      w++;
    }
    const slot = window[w]!;
    out.shard[i] = slot.shard;
    out.row[i] = slot.rows[slot.next++]!;
    left--;
    if (slot.next === slot.rows.length) window.splice(w, 1);
  }
  return out;
}

/** One training sample: a caption row of a resident shard, and the cursor just after it. */
export interface Sample {
  shard: Shard;
  row: number;
  after: DataCursor;
}

/**
 * The training samples of one epoch from `start` on (epochOrder). A shard is fetched when the shard first used
 * before it is first used (one ahead), and dropped after its last sample.
 */
export async function* epochSamples(store: ObjectStore, index: ShardIndex, seed: number, start: DataCursor): AsyncGenerator<Sample> {
  const { epoch } = start;
  const order = epochOrder(index, seed, epoch);
  const lastUse = new Map<number, number>();
  const firstUsed: number[] = [];
  order.shard.forEach((s, i) => {
    if (!lastUse.has(s)) firstUsed.push(s);
    lastUse.set(s, i);
  });
  const resident = new Map<number, Promise<Shard>>();
  const fetch = (s: number): Promise<Shard> => {
    let p = resident.get(s);
    if (!p) {
      const want = index.rows[s]!.train + index.rows[s]!.val + index.rows[s]!.test;
      // The index is read, not derived from the shards: a shard that disagrees with it must not be indexed past its end.
      p = loadShard(store, index.keys[s]!).then((shard) => {
        if (shard.captions.length !== want) throw new TrainInputError(`${index.keys[s]}: ${shard.captions.length} captions, the shard index says ${want}`);
        return shard;
      });
      // A consumer that stops early leaves a prefetch unawaited; its failure must not crash the process.
      p.catch(() => undefined);
      resident.set(s, p);
    }
    return p;
  };
  const seen = new Set<number>();
  for (let i = start.sample; i < order.shard.length; i++) {
    const s = order.shard[i]!;
    if (!seen.has(s)) {
      seen.add(s);
      const ahead = firstUsed[firstUsed.indexOf(s) + 1];
      if (ahead !== undefined && lastUse.get(ahead)! >= start.sample) void fetch(ahead);
    }
    const shard = await fetch(s);
    if (lastUse.get(s) === i) resident.delete(s);
    yield { shard, row: order.row[i]!, after: { epoch, sample: i + 1 } };
  }
}
