import type { ShardIndexFile } from '../shard-index.ts';
import type { ObjectStore } from '../store.ts';
import type { TrainOptions } from '../train-options.ts';
import { collectShards } from './collect.ts';
import { shardItem } from './shard-item.ts';
import type { ShardSummary, ValidationReport } from './types.ts';
import { validateCaptions } from './validate.ts';

/** Where the plan's spills go, under the output folder, removed when the shards are done. */
const PLAN_DIR = '_plan';

export interface CheckOptions {
  /** Overrides the model's image size (`rsclip shard --size`). */
  imageSize?: number;
  /** Check the images of an invalid dataset too, so one report lists every problem. */
  always?: boolean;
  /** Write no `.rsshard` (validation only); summaries and the index are still written. */
  discardShards?: boolean;
  /** Called once the plan is written: the rows and shards to come. */
  onPlanned?: (rows: number, shards: number) => void;
  onShard?: (s: ShardSummary) => void;
}

/**
 * The pipeline's Validate, Shard and Collect steps in one process over a folder or prefix: the same rules and
 * code, one item after another. `out` receives the shards, their summaries and index.json.
 */
export async function checkDataset(
  dataset: ObjectStore,
  name: string,
  out: ObjectStore,
  opts: CheckOptions = {},
): Promise<{ report: ValidationReport; options: TrainOptions; index?: ShardIndexFile }> {
  const planStore = out.child(PLAN_DIR);
  const first = await validateCaptions(dataset, name, { store: planStore, prefix: 'rows', bucket: '', runId: 'local', always: opts.always });
  if (!first.plan) return { report: first.report, options: first.options };
  opts.onPlanned?.(first.plan.reduce((n, i) => n + i.rows, 0), first.plan.length);
  try {
    for (const item of first.plan) {
      const summary = await shardItem(
        { ...item, imageSize: opts.imageSize ?? item.imageSize },
        { plan: planStore, images: dataset, shards: out },
        { discardShard: opts.discardShards },
      );
      opts.onShard?.(summary);
    }
  } finally {
    for (const o of await planStore.list()) await planStore.delete(o.key);
  }
  const { report, index } = await collectShards(out, first.report, first.plan.length);
  return { report, options: first.options, index };
}
