import { preprocessImage } from '../preprocess.ts';
import { CAPTIONS_FILE } from '../s3-layout.ts';
import { draftShard, type SealedShard, type ShardMeta } from '../shard-format.ts';
import type { ObjectStore } from '../store.ts';
import { tokenizeAll } from '../tokenizer/index.ts';
import type { DatasetRow } from '../dataset.ts';
import { mapLimit } from './objects.ts';

export interface BuildShardOptions {
  imageSize: number;
  bands?: number[];
  maxPixels?: number;
  /** Images fetched and decoded at once. */
  concurrency?: number;
  /** Supplies the shard's zeroed buffer of `n` bytes (a BufferPool's take); a fresh one otherwise. */
  allocate?: (n: number) => Uint8Array;
}

export interface BuiltShard extends SealedShard {
  images: number;
}

/**
 * Reads and preprocesses the images of `rows` from the dataset folder and tokenizes their captions, decoding each
 * image straight into its place in the encoded shard. Images are stored once each, in first-appearance order;
 * every row keeps its CSV line. Errors name the file and line.
 */
export async function buildShard(dataset: ObjectStore, rows: DatasetRow[], opts: BuildShardOptions): Promise<BuiltShard> {
  const S = opts.imageSize;
  const imageIndex = new Map<string, number>();
  const firstRow: DatasetRow[] = [];
  for (const r of rows) {
    if (imageIndex.has(r.filename)) continue;
    imageIndex.set(r.filename, firstRow.length);
    firstRow.push(r);
  }
  const meta: ShardMeta = {
    imageSize: S,
    imageIds: firstRow.map((r) => r.filename),
    splits: firstRow.map((r) => r.split),
    labels: firstRow.map((r) => r.label ?? null),
    captions: rows.map((r) => r.caption),
  };
  const draft = draftShard(meta, rows.length, opts.allocate);
  const per = S * S * 3;
  await mapLimit(firstRow, opts.concurrency ?? 8, async (r, i) => {
    const source = `${r.filename} (${CAPTIONS_FILE} line ${r.line})`;
    const bytes = await dataset.tryGet(r.filename);
    if (!bytes) throw new Error(`${source}: image not found in ${dataset.uri}`);
    await preprocessImage(bytes, { size: S, bands: opts.bands, maxPixels: opts.maxPixels, source }, draft.pixels.subarray(i * per, (i + 1) * per));
  });
  rows.forEach((r, i) => {
    draft.captionImage[i] = imageIndex.get(r.filename)!;
    draft.lines[i] = r.line;
  });
  draft.tokens.set(tokenizeAll(meta.captions));
  return { ...draft.seal(), images: firstRow.length };
}
