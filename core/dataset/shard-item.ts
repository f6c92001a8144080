import { shardName, shardSummaryName } from '../s3-layout.ts';
import type { ObjectStore } from '../store.ts';
import { buildShard, type BuildShardOptions } from './build-shard.ts';
import { readPlanRows } from './plan.ts';
import { MAX_REPORTED_PROBLEMS, type ShardRequest, type ShardSummary } from './types.ts';

export interface ShardStores {
  /** Where the plan object is (its key as the item names it). */
  plan: ObjectStore;
  /** The dataset folder. */
  images: ObjectStore;
  /** The run's shards folder. */
  shards: ObjectStore;
}

/**
 * One Shard item: its rows from the plan, the shard of its readable images, and its summary beside it. Both
 * files depend only on the item, so a retried invocation rewrites the same two and never leaves half of either.
 */
export async function shardItem(
  item: Pick<ShardRequest, 'shard' | 'split' | 'imageSize' | 'bands' | 'part'>,
  stores: ShardStores,
  opts: Omit<BuildShardOptions, 'imageSize' | 'bands'> & { /** Build but do not write the shard (validation only). */ discardShard?: boolean } = {},
): Promise<ShardSummary> {
  const rows = await readPlanRows(stores.plan, item.part);
  const built = await buildShard(stores.images, rows, { ...opts, imageSize: item.imageSize, bands: item.bands });
  try {
    if (built.shard && !opts.discardShard) await stores.shards.put(shardName(item.shard), built.shard.bytes);
  } finally {
    if (built.shard) opts.release?.(built.shard.bytes);
  }
  const summary: ShardSummary = {
    shard: item.shard,
    split: item.split,
    ...(built.shard ? { name: shardName(item.shard), sha256: built.shard.sha256 } : {}),
    imageSize: item.imageSize,
    rows: built.rows.length,
    images: built.images,
    labels: [...new Set(built.rows.flatMap((r) => (r.label !== undefined ? [r.label] : [])))].sort(),
    badRows: built.problems.length,
    badImages: built.badImages,
    problems: built.problems.slice(0, MAX_REPORTED_PROBLEMS),
  };
  await stores.shards.put(shardSummaryName(item.shard), JSON.stringify(summary));
  return summary;
}
