import { preprocessImage } from '../preprocess.ts';
import { CAPTIONS_FILE } from '../s3-layout.ts';
import type { Shard } from '../shard-format.ts';
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
}

/**
 * Reads and preprocesses the images of `rows` from the dataset folder and tokenizes their captions. Images are
 * stored once each, in first-appearance order; every row keeps its CSV line. Errors name the file and line.
 */
export async function buildShard(dataset: ObjectStore, rows: DatasetRow[], opts: BuildShardOptions): Promise<Shard> {
  const S = opts.imageSize;
  const imageIndex = new Map<string, number>();
  const firstRow: DatasetRow[] = [];
  for (const r of rows) {
    if (imageIndex.has(r.filename)) continue;
    imageIndex.set(r.filename, firstRow.length);
    firstRow.push(r);
  }
  const per = S * S * 3;
  const pixels = new Uint8Array(firstRow.length * per);
  await mapLimit(firstRow, opts.concurrency ?? 8, async (r, i) => {
    const source = `${r.filename} (${CAPTIONS_FILE} line ${r.line})`;
    const bytes = await dataset.tryGet(r.filename);
    if (!bytes) throw new Error(`${source}: image not found in ${dataset.uri}`);
    pixels.set(await preprocessImage(bytes, { size: S, bands: opts.bands, maxPixels: opts.maxPixels, source }), i * per);
  });
  return {
    imageSize: S,
    pixels,
    imageIds: firstRow.map((r) => r.filename),
    splits: firstRow.map((r) => r.split),
    labels: firstRow.map((r) => r.label ?? null),
    captions: rows.map((r) => r.caption),
    captionImage: Int32Array.from(rows, (r) => imageIndex.get(r.filename)!),
    lines: Int32Array.from(rows, (r) => r.line),
    tokens: tokenizeAll(rows.map((r) => r.caption)),
  };
}
