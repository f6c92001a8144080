import { z } from 'zod';
import { SPLITS } from './shard-format.ts';

/**
 * `index.json` beside a run's shards: what the worker needs to plan epochs and evaluations (each shard's split
 * and row count, the labels), written once by Collect, so training starts with one small read instead of a full
 * read of every shard. Each shard holds one split.
 */
export const SHARD_INDEX_FILE = 'index.json';
export const SHARD_INDEX_VERSION = 1;
/** A hostile or corrupt index cannot make the worker allocate past this. */
export const MAX_SHARD_INDEX_BYTES = 256 * 1024 * 1024;

const SplitSchema = z.enum(SPLITS as unknown as ['train', 'val', 'test']);

export const ShardIndexFileSchema = z
  .object({
    version: z.literal(SHARD_INDEX_VERSION),
    imageSize: z.number().int().min(1).max(4096),
    shards: z.array(
      z
        .object({
          name: z.string().regex(/^[A-Za-z0-9._-]+\.rsshard$/),
          split: SplitSchema,
          rows: z.number().int().min(1),
          images: z.number().int().min(1),
        })
        .strict(),
    ),
    labels: z.object({ train: z.array(z.string()), val: z.array(z.string()), test: z.array(z.string()) }).strict(),
  })
  .strict();
export type ShardIndexFile = z.infer<typeof ShardIndexFileSchema>;
