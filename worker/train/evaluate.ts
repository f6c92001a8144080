import { normalizeHwcToChw } from '../../core/pixels.ts';
import { CONTEXT_LENGTH, type Split } from '../../core/shard-format.ts';
import type { ObjectStore } from '../../core/store.ts';
import { tokenizeAll } from '../../core/tokenizer/index.ts';
import { prefetchShards, type ShardIndex } from '../data/shard-stream.ts';
import type { ClipTrainer } from '../clip/api.ts';
import { retrievalFromEmbeddings, similarity, zeroShotTop1, type RetrievalMetrics } from './metrics.ts';
import { concatArrays } from '../../core/tensors/tensor.ts';

export const ZERO_SHOT_PROMPT = (label: string): string => `a satellite photo of ${label}.`;
/** Rows per encode call: bounds the memory of one evaluation chunk. */
export const EVAL_CHUNK = 64;

type Encoder = Pick<ClipTrainer, 'encodeImages' | 'encodeTexts'>;

/** Concatenates per-chunk embeddings without knowing the total up front. */
class Rows {
  private parts: Float32Array[] = [];
  n = 0;
  push(emb: Float32Array, n: number): void {
    this.parts.push(emb);
    this.n += n;
  }
  concat(): Float32Array {
    return concatArrays(this.parts, Float32Array);
  }
}

export interface EvaluateOptions {
  /**
   * Evaluate only the first shards of the split (in index order) until they hold this many of its images: the
   * same subset every time, whole shards so that no caption loses its image. Default: the whole split.
   */
  maxImages?: number;
}

/** One split's embeddings, rows in shard order. */
interface SplitEmbeddings {
  images: Rows;
  texts: Rows;
  /** Row in `images` of each row in `texts`. */
  captionImage: Int32Array;
  /** Index into the split's labels of each image, -1 without one. */
  imageClass: Int32Array;
}

async function embedSplit(model: Encoder, store: ObjectStore, index: ShardIndex, split: Split, maxImages = Infinity): Promise<SplitEmbeddings> {
  const size = index.imageSize;
  const pixelsPer = size * size * 3;
  const images = new Rows();
  const texts = new Rows();
  const captionImage: number[] = [];
  const classes = index.labels[split];
  const imageClass: number[] = [];
  const order = index.keys.map((_, i) => i).filter((i) => index.rows[i]![split] > 0);
  for await (const { shard } of prefetchShards(store, index.keys, order)) {
    const local = new Map<number, number>();
    shard.splits.forEach((s, i) => {
      if (s === split) local.set(i, images.n + local.size);
    });
    const ids = [...local.keys()];
    for (let c = 0; c < ids.length; c += EVAL_CHUNK) {
      const chunk = ids.slice(c, c + EVAL_CHUNK);
      const hwc = new Uint8Array(chunk.length * pixelsPer);
      chunk.forEach((img, j) => hwc.set(shard.pixels.subarray(img * pixelsPer, (img + 1) * pixelsPer), j * pixelsPer));
      images.push(await model.encodeImages(normalizeHwcToChw(hwc, chunk.length, size), chunk.length), chunk.length);
    }
    for (const img of ids) imageClass.push(shard.labels[img] === null ? -1 : classes.indexOf(shard.labels[img]!));
    const rows: number[] = [];
    for (let r = 0; r < shard.captions.length; r++) if (local.has(shard.captionImage[r]!)) rows.push(r);
    for (let c = 0; c < rows.length; c += EVAL_CHUNK) {
      const chunk = rows.slice(c, c + EVAL_CHUNK);
      const tokens = new Int32Array(chunk.length * CONTEXT_LENGTH);
      chunk.forEach((r, j) => tokens.set(shard.tokens.subarray(r * CONTEXT_LENGTH, (r + 1) * CONTEXT_LENGTH), j * CONTEXT_LENGTH));
      texts.push(await model.encodeTexts(tokens, chunk.length), chunk.length);
    }
    for (const r of rows) captionImage.push(local.get(shard.captionImage[r]!)!);
    // The index counts caption rows, not images, so the sample ends at the first shard that reaches it.
    if (images.n >= maxImages) break;
  }
  return { images, texts, captionImage: Int32Array.from(captionImage), imageClass: Int32Array.from(imageClass) };
}

/**
 * Retrieval (and zero-shot, when the split has labels) metrics of one split, or of its first shards with
 * `maxImages`, streaming the shards: only the embeddings stay in memory, never the pixels or a similarity matrix.
 * `images` and `captions` of the result say how much was evaluated.
 */
export async function evaluateSplit(
  model: Encoder,
  store: ObjectStore,
  index: ShardIndex,
  split: Split,
  opts: EvaluateOptions = {},
): Promise<RetrievalMetrics | undefined> {
  if (index.totals[split] === 0) return undefined;
  const { images, texts, captionImage, imageClass } = await embedSplit(model, store, index, split, opts.maxImages);
  const imageEmb = images.concat();
  const dim = imageEmb.length / images.n;
  const metrics = retrievalFromEmbeddings(imageEmb, images.n, texts.concat(), dim, captionImage);
  const classes = index.labels[split];
  if (classes.length > 1) {
    const prompts = tokenizeAll(classes.map(ZERO_SHOT_PROMPT), CONTEXT_LENGTH);
    const classEmb = await model.encodeTexts(prompts, classes.length);
    metrics.zeroshot_top1 = zeroShotTop1(similarity(imageEmb, images.n, classEmb, classes.length, dim), images.n, classes.length, imageClass);
  }
  return metrics;
}
