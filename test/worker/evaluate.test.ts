import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIP_MEAN, CLIP_STD } from '../../core/pixels.ts';
import { FsStore } from '../../core/store.ts';
import { tokenizeAll } from '../../core/tokenizer/index.ts';
import { indexShards, type ShardIndex } from '../../worker/data/shard-stream.ts';
import { ZERO_SHOT_PROMPT, evaluateSplit } from '../../worker/train/evaluate.ts';
import { makeShard, tempDir, writeShards, type SyntheticImage } from './helpers.ts';

const SIZE = 4;
const N = 30;
const CLASSES = ['beach', 'forest', 'water'];
const DIM = N + CLASSES.length;
const classOf = (g: number): number => Math.floor(g / 3) % CLASSES.length;

/**
 * An encoder that knows the truth: image g (red channel of pixel 0 = g) embeds as one-hot(g) + one-hot(class),
 * a caption of image g (token 3000 + g) as one-hot(g), a class prompt as one-hot(class). So retrieval is perfect,
 * and zero-shot is perfect except where the test mislabels.
 */
function oracle(labelOf: (g: number) => number) {
  const prompts = tokenizeAll(CLASSES.map(ZERO_SHOT_PROMPT));
  return {
    async encodeImages(images: Float32Array, n: number): Promise<Float32Array> {
      const out = new Float32Array(n * DIM);
      for (let i = 0; i < n; i++) {
        const g = Math.round((images[i * 3 * SIZE * SIZE]! * CLIP_STD[0] + CLIP_MEAN[0]) * 255);
        out[i * DIM + g] = Math.SQRT1_2;
        out[i * DIM + N + labelOf(g)] = Math.SQRT1_2;
      }
      return out;
    },
    async encodeTexts(tokens: Int32Array, n: number): Promise<Float32Array> {
      const out = new Float32Array(n * DIM);
      for (let i = 0; i < n; i++) {
        const row = tokens.subarray(i * 77, (i + 1) * 77);
        const cls = CLASSES.findIndex((_, c) => prompts.subarray(c * 77, (c + 1) * 77).every((t, k) => t === row[k]));
        out[i * DIM + (cls >= 0 ? N + cls : row[1]! - 3000)] = 1;
      }
      return out;
    },
  };
}

/** Records the keys read, to see where a sampled evaluation stops. */
class ReadLog extends FsStore {
  reads: string[] = [];
  override async tryGet(key: string): Promise<Uint8Array | undefined> {
    this.reads.push(key);
    return super.tryGet(key);
  }
}

describe('evaluateSplit', () => {
  const dir = tempDir('eval');
  afterAll(dir.cleanup);
  const images: SyntheticImage[] = Array.from({ length: N }, (_, g) => ({
    id: `${g}.png`,
    split: g % 3 === 0 ? 'train' : g % 3 === 1 ? 'val' : 'test',
    label: CLASSES[classOf(g)]!,
    captions: Array.from({ length: 1 + (g % 2) }, () => `image ${g}`),
    paint: (_y, _x, c) => (c === 0 ? g : 0),
  }));
  const captionsOf = (imgs: SyntheticImage[]): number => imgs.reduce((a, i) => a + i.captions.length, 0);
  // Captions carry their image's global id in token 1.
  const tokenize = (texts: string[]): Int32Array => {
    const t = new Int32Array(texts.length * 77);
    texts.forEach((s, r) => t.set([49406, 3000 + Number(s.split(' ')[1]), 49407], r * 77));
    return t;
  };
  const store = new ReadLog(dir.path);
  let index: ShardIndex;
  beforeAll(async () => {
    // Three shards of ten images; the val images are 3, 4 and 3 of them.
    await writeShards(store, [0, 1, 2].map((s) => makeShard(SIZE, images.slice(s * 10, (s + 1) * 10), tokenize)));
    index = await indexShards(store);
  });

  it('streams the split across shards, keeps each caption tied to its image, and scores zero-shot over labels', async () => {
    const val = (await evaluateSplit(oracle(classOf), store, index, 'val'))!;
    expect(val.images).toBe(10);
    expect(val.captions).toBe(captionsOf(images.filter((i) => i.split === 'val')));
    expect(val.mean_recall).toBe(100);
    expect(val.zeroshot_top1).toBe(100);

    // Embed half the val images (g = 1, 7, 13, 19, 25) with the wrong class: zero-shot drops to 50; retrieval is
    // unaffected because the caption part of each embedding still matches exactly.
    const wrong = (await evaluateSplit(oracle((g) => (Math.floor(g / 3) % 2 === 0 ? (classOf(g) + 1) % 3 : classOf(g))), store, index, 'val'))!;
    expect(wrong.zeroshot_top1).toBe(50);
    expect(wrong['text_to_image_R@1']).toBe(100);

    const test = (await evaluateSplit(oracle(classOf), store, index, 'test'))!;
    expect(test.images).toBe(10);
    expect(test.mean_recall).toBe(100);
  });

  it('with maxImages takes whole shards in index order until they hold that many images, and says so', async () => {
    const valOf = (shards: number): SyntheticImage[] => images.slice(0, shards * 10).filter((i) => i.split === 'val');
    for (const [maxImages, shards] of [[1, 1], [3, 1], [4, 2], [7, 2], [8, 3], [1000, 3]] as const) {
      store.reads = [];
      const m = (await evaluateSplit(oracle(classOf), store, index, 'val', { maxImages }))!;
      expect({ maxImages, images: m.images, captions: m.captions }).toEqual({ maxImages, images: valOf(shards).length, captions: captionsOf(valOf(shards)) });
      expect(m.mean_recall).toBe(100);
      // At most the one shard the stream had prefetched is read past the sample.
      expect(store.reads.length).toBeLessThanOrEqual(shards + 1);
    }
    // The same subset every time, zero-shot included: one of shard 0's three val images carries the wrong class.
    const oneWrong = oracle((g) => (g === 1 ? (classOf(g) + 1) % 3 : classOf(g)));
    const once = await evaluateSplit(oneWrong, store, index, 'val', { maxImages: 2 });
    const again = await evaluateSplit(oneWrong, store, index, 'val', { maxImages: 2 });
    expect(again).toEqual(once);
    expect(once!.zeroshot_top1).toBeCloseTo(200 / 3, 10);
  });
});
