import * as ort from 'onnxruntime-node';
import { normalizeHwcToChw } from '../../core/pixels.ts';
import { CONTEXT_LENGTH, type Split } from '../../core/shard-format.ts';
import type { ObjectStore } from '../../core/store.ts';
import { tokenizeAll } from '../../core/tokenizer/index.ts';
import { indexShards, prefetchShards } from '../../worker/data/shard-stream.ts';
import type { ClipTrainer } from '../../worker/clip/api.ts';
import { similarity } from '../../worker/train/metrics.ts';
import { concatArrays } from '../../core/tensors/tensor.ts';

/** Images and captions of one split, as the model sees them (uint8 HWC at the shard's image size). */
export interface GalleryPool {
  split: Split;
  imageSize: number;
  pixels: Uint8Array;
  ids: string[];
  labels: (string | null)[];
  captions: { text: string; image: number }[];
}

export interface Query {
  text: string;
  /** The pool image the caption describes. */
  image: number;
  /** Its label: images sharing it count as correct answers; without labels only `image` does. */
  label: string | null;
}

export interface Hit {
  image: number;
  score: number;
  relevant: boolean;
}

export type Encoders = Pick<ClipTrainer, 'encodeImages' | 'encodeTexts'> & { close(): Promise<void> };

/** Bounds the embedding work and the report's size on big validation splits. */
export const MAX_POOL_IMAGES = 256;
const EVAL_ORDER: readonly Split[] = ['val', 'test', 'train'];

/**
 * The pool the gallery searches: the first split (val, then test, then train) that has images in the shards,
 * up to `maxImages` images with their captions.
 */
export async function loadPool(shards: ObjectStore, maxImages = MAX_POOL_IMAGES): Promise<GalleryPool> {
  const index = await indexShards(shards);
  const split = EVAL_ORDER.find((s) => index.totals[s] > 0);
  if (!split) throw new Error(`no images in the shards under ${shards.uri}`);
  const imageSize = index.imageSize;
  const per = imageSize * imageSize * 3;
  const chunks: Uint8Array[] = [];
  const pool: GalleryPool = { split, imageSize, pixels: new Uint8Array(0), ids: [], labels: [], captions: [] };
  // Only the shards of that split, and only until the pool is full.
  const order = index.keys.map((_, i) => i).filter((i) => index.rows[i]![split] > 0);
  for await (const { shard } of prefetchShards(shards, index.keys, order)) {
    if (pool.ids.length >= maxImages) break;
    const local = new Map<number, number>();
    for (let i = 0; i < shard.imageIds.length && pool.ids.length < maxImages; i++) {
      if (shard.splits[i] !== split) continue;
      local.set(i, pool.ids.length);
      pool.ids.push(shard.imageIds[i]!);
      pool.labels.push(shard.labels[i] ?? null);
      chunks.push(shard.pixels.subarray(i * per, (i + 1) * per));
    }
    shard.captions.forEach((text, r) => {
      const image = local.get(shard.captionImage[r]!);
      if (image !== undefined) pool.captions.push({ text, image });
    });
  }
  pool.pixels = concatArrays(chunks, Uint8Array);
  return pool;
}

/** One caption per label (in order of first appearance), or the first captions of distinct images without labels. */
export function chooseQueries(pool: GalleryPool, max = 6): Query[] {
  const out: Query[] = [];
  const seen = new Set<string>();
  for (const c of pool.captions) {
    const label = pool.labels[c.image] ?? null;
    const key = label ?? `image:${c.image}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ text: c.text, image: c.image, label });
    if (out.length === max) break;
  }
  return out;
}

const EMBED_CHUNK = 64;

async function embedImages(enc: Encoders, pool: GalleryPool): Promise<Float32Array> {
  const per = pool.imageSize * pool.imageSize * 3;
  const parts: Float32Array[] = [];
  for (let i = 0; i < pool.ids.length; i += EMBED_CHUNK) {
    const n = Math.min(EMBED_CHUNK, pool.ids.length - i);
    parts.push(await enc.encodeImages(normalizeHwcToChw(pool.pixels.subarray(i * per, (i + n) * per), n, pool.imageSize), n));
  }
  return concatArrays(parts, Float32Array);
}

/** The top `k` pool images for each query under one model, best first. */
export async function rankPool(enc: Encoders, pool: GalleryPool, queries: Query[], k = 5): Promise<Hit[][]> {
  const images = await embedImages(enc, pool);
  const texts = await enc.encodeTexts(tokenizeAll(queries.map((q) => q.text), CONTEXT_LENGTH), queries.length);
  const n = pool.ids.length;
  const dim = images.length / n;
  const sim = similarity(texts, queries.length, images, n, dim);
  return queries.map((q, qi) => {
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => sim[qi * n + b]! - sim[qi * n + a]! || a - b);
    return order.slice(0, k).map((image) => ({
      image,
      score: sim[qi * n + image]!,
      relevant: q.label !== null ? pool.labels[image] === q.label : image === q.image,
    }));
  });
}

/** The fixed batch an exported input declares, or undefined when its first dimension is symbolic. */
function staticBatch(session: ort.InferenceSession, input: string): number | undefined {
  const meta = session.inputMetadata.find((m) => m.name === input);
  const first = meta?.isTensor ? meta.shape[0] : undefined;
  return typeof first === 'number' && first > 0 ? first : undefined;
}

/**
 * Runs `n` rows through a single-input encoder in batches of the graph's static batch size (zero-padding the
 * last), since the published encoders may have static shapes.
 */
async function embedRows<T extends Float32Array | BigInt64Array>(
  session: ort.InferenceSession,
  input: string,
  type: 'float32' | 'int64',
  rows: T,
  n: number,
  rowShape: number[],
): Promise<Float32Array> {
  const rowLen = rows.length / n;
  const batch = staticBatch(session, input) ?? n;
  const parts: Float32Array[] = [];
  for (let i = 0; i < n; i += batch) {
    const take = Math.min(batch, n - i);
    const feed = new (rows.constructor as { new (len: number): T })(batch * rowLen);
    feed.set(rows.subarray(i * rowLen, (i + take) * rowLen) as never);
    const out = await session.run({ [input]: new ort.Tensor(type, feed, [batch, ...rowShape]) });
    const emb = out.embedding!.data as Float32Array;
    parts.push(emb.subarray(0, (emb.length / batch) * take));
  }
  return concatArrays(parts, Float32Array);
}

/** The published standalone encoders (inputs `image` / `text`, output `embedding`) run with onnxruntime-node. */
export async function onnxEncoders(imageOnnx: Uint8Array, textOnnx: Uint8Array): Promise<Encoders> {
  const opts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
  const image = await ort.InferenceSession.create(imageOnnx, opts);
  const text = await ort.InferenceSession.create(textOnnx, opts);
  return {
    encodeImages(chw, n) {
      const s = Math.round(Math.sqrt(chw.length / n / 3));
      return embedRows(image, 'image', 'float32', chw, n, [3, s, s]);
    },
    encodeTexts(tokens, n) {
      return embedRows(text, 'text', 'int64', BigInt64Array.from(tokens, BigInt), n, [tokens.length / n]);
    },
    async close() {
      await image.release();
      await text.release();
    },
  };
}
