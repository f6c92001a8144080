import { decodeShard, type Shard, type Split } from '../../core/shard-format.ts';
import type { ObjectStore } from '../../core/store.ts';
import { TrainInputError } from '../train/errors.ts';
import { Rng } from './rng.ts';

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
  /** Distinct labels per split, sorted. */
  labels: Record<Split, string[]>;
}

/** Where the training stream stands: the next sample is `sample` in the order of the `shard`-th shard of `epoch`. */
export interface DataCursor {
  epoch: number;
  shard: number;
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

export async function indexShards(store: ObjectStore, keys?: string[]): Promise<ShardIndex> {
  const all = keys ?? (await listShardKeys(store));
  if (all.length === 0) throw new TrainInputError(`no ${SHARD_SUFFIX} files under ${store.uri}`);
  const rows: Record<Split, number>[] = [];
  const totals = emptyCounts();
  const labelSets: Record<Split, Set<string>> = { train: new Set(), val: new Set(), test: new Set() };
  let imageSize = 0;
  for await (const { index, shard } of prefetchShards(store, all, all.map((_, i) => i))) {
    if (imageSize === 0) imageSize = shard.imageSize;
    else if (shard.imageSize !== imageSize) {
      throw new TrainInputError(`${all[index]}: image size ${shard.imageSize} differs from the other shards' ${imageSize}`);
    }
    const counts = emptyCounts();
    for (let r = 0; r < shard.captions.length; r++) counts[shard.splits[shard.captionImage[r]!]!]++;
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
  return { keys: all, imageSize, rows, totals, labels };
}

// Salts keep the derived streams independent of each other.
const SALT_SHARD_ORDER = 1;
const SALT_SAMPLE_ORDER = 2;

/** The epoch's shard order: a permutation seeded by (seed, epoch). */
export function epochShardOrder(seed: number, epoch: number, nShards: number): Int32Array {
  return Rng.fromSeed(seed, SALT_SHARD_ORDER, epoch).permutation(nShards);
}

/** The epoch's order of a shard's training caption rows, seeded by (seed, epoch, shard index). */
export function shardSampleOrder(seed: number, epoch: number, shardIndex: number, shard: Shard): Int32Array {
  const rows: number[] = [];
  for (let r = 0; r < shard.captions.length; r++) if (shard.splits[shard.captionImage[r]!] === 'train') rows.push(r);
  const perm = Rng.fromSeed(seed, SALT_SAMPLE_ORDER, epoch, shardIndex).permutation(rows.length);
  return Int32Array.from(perm, (i) => rows[i]!);
}

/** One training sample: a caption row of a resident shard, and the cursor just after it. */
export interface Sample {
  shard: Shard;
  row: number;
  after: DataCursor;
}

/**
 * The training samples of one epoch from `start` on: every train-split caption row once (open_clip CsvDataset
 * semantics: each caption row is a sample), shards in the epoch's seeded order, rows shuffled within each shard.
 */
export async function* epochSamples(store: ObjectStore, index: ShardIndex, seed: number, start: DataCursor): AsyncGenerator<Sample> {
  const { epoch } = start;
  const order = epochShardOrder(seed, epoch, index.keys.length);
  // Shards without training rows are skipped without fetching them.
  const positions = [...order.keys()].filter((pos) => pos >= start.shard && index.rows[order[pos]!]!.train > 0);
  const fetchOrder = positions.map((pos) => order[pos]!);
  let k = 0;
  for await (const { index: shardIndex, shard } of prefetchShards(store, index.keys, fetchOrder)) {
    const pos = positions[k++]!;
    const rows = shardSampleOrder(seed, epoch, shardIndex, shard);
    for (let i = pos === start.shard ? start.sample : 0; i < rows.length; i++) {
      const last = i + 1 === rows.length;
      yield { shard, row: rows[i]!, after: last ? { epoch, shard: pos + 1, sample: 0 } : { epoch, shard: pos, sample: i + 1 } };
    }
  }
}
