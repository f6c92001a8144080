import { ImageError, preprocessImage } from '../preprocess/index.ts';
import { CAPTIONS_FILE } from '../s3-layout.ts';
import { draftShard, type SealedShard, type ShardMeta } from '../shard-format.ts';
import type { ObjectStore } from '../store.ts';
import { tokenizeAll } from '../tokenizer/index.ts';
import { mapLimit } from './map-limit.ts';
import type { DatasetProblem, DatasetRow } from './types.ts';

export interface BuildShardOptions {
  imageSize: number;
  bands?: number[];
  maxPixels?: number;
  /** Images fetched and decoded at once. */
  concurrency?: number;
  /** Supplies the shard's zeroed buffer of `n` bytes (a BufferPool's take); a fresh one otherwise. */
  allocate?: (n: number) => Uint8Array;
  /** Takes back a buffer from `allocate` that the result does not use (a BufferPool's release). */
  release?: (b: Uint8Array) => void;
}

export interface BuiltShard {
  /** Absent when no image of the rows could be read. */
  shard?: SealedShard;
  images: number;
  /** The rows in the shard: `rows` less those of unreadable images. */
  rows: DatasetRow[];
  /** One per row of an unreadable image (missing, corrupt, over the pixel limit), in row order. */
  problems: DatasetProblem[];
  badImages: number;
}

/**
 * Reads and preprocesses the images of `rows` from the dataset folder and tokenizes their captions, decoding each
 * image straight into its place in the encoded shard. Images are stored once each, in first-appearance order;
 * every row keeps its CSV line. An image that cannot be read becomes a problem on each of its rows and is left out
 * (the run's policy decides later whether that is fatal); a failing store read still throws, so the item retries.
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
  const unreadable = new Map<string, string>();
  await mapLimit(firstRow, opts.concurrency ?? 8, async (r, i) => {
    const source = `${r.filename} (${CAPTIONS_FILE} line ${r.line})`;
    const bytes = await dataset.tryGet(r.filename);
    if (!bytes) {
      unreadable.set(r.filename, 'image not found in the dataset folder');
      return;
    }
    try {
      await preprocessImage(bytes, { size: S, bands: opts.bands, maxPixels: opts.maxPixels, source }, draft.pixels.subarray(i * per, (i + 1) * per));
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      unreadable.set(r.filename, e.reason);
    }
  });
  if (unreadable.size > 0) {
    // Rare: lay the shard out again without them (the good images are decoded a second time).
    opts.release?.(draft.pixels);
    const good = rows.filter((r) => !unreadable.has(r.filename));
    const rebuilt = good.length > 0 ? await buildShard(dataset, good, opts) : { images: 0, rows: [], problems: [], badImages: 0 };
    if (rebuilt.badImages > 0) throw new Error(`${rebuilt.problems[0]!.reason}: an image read on the first attempt failed on the second`);
    const problems = rows.flatMap((r) => {
      const reason = unreadable.get(r.filename);
      return reason ? [{ file: CAPTIONS_FILE, line: r.line, field: 'filename', reason } satisfies DatasetProblem] : [];
    });
    return { ...rebuilt, problems, badImages: unreadable.size };
  }
  rows.forEach((r, i) => {
    draft.captionImage[i] = imageIndex.get(r.filename)!;
    draft.lines[i] = r.line;
  });
  draft.tokens.set(tokenizeAll(meta.captions));
  return { shard: draft.seal(), images: firstRow.length, rows, problems: [], badImages: 0 };
}
