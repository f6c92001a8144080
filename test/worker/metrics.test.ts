import { describe, expect, it } from 'vitest';
import { RECALL_KS, retrievalFromEmbeddings, similarity, zeroShotTop1, type RetrievalMetrics } from '../../worker/train/metrics.ts';
import { Rng } from '../../worker/data/rng.ts';
import { cosineLr } from '../../worker/train/schedule.ts';
import { RECIPES, planSteps, resolveRecipe } from '../../worker/train/recipe.ts';
import { loadModelConfig } from '../../core/model-config/config.ts';

/**
 * Retrieval of given scores `sim` [nImages, nCaptions]: image i embeds as row i and caption c as the unit vector
 * e_c, so that each dot product is exactly one score (for finite scores; a NaN spreads over its row).
 */
function retrievalFromSimilarity(sim: Float32Array, nImages: number, captionImage: Int32Array): RetrievalMetrics {
  const n = captionImage.length;
  const eye = new Float32Array(n * n);
  for (let c = 0; c < n; c++) eye[c * n + c] = 1;
  return retrievalFromEmbeddings(sim, nImages, eye, n, captionImage);
}

describe('retrieval metrics', () => {
  // 3 images; captions 0,1 -> image 0; 2 -> image 1; 3,4 -> image 2.
  const captionImage = Int32Array.from([0, 0, 1, 2, 2]);

  it('a perfect similarity matrix scores 100 everywhere', () => {
    const sim = Float32Array.from([
      [0.9, 0.8, 0.1, 0.0, 0.1],
      [0.1, 0.2, 0.9, 0.1, 0.0],
      [0.0, 0.1, 0.2, 0.7, 0.9],
    ].flat());
    const m = retrievalFromSimilarity(sim, 3, captionImage);
    expect(m.mean_recall).toBe(100);
    expect(m.images).toBe(3);
    expect(m.captions).toBe(5);
  });

  it('an image hits when ANY of its captions is in the top k; each caption has one image', () => {
    const sim = Float32Array.from([
      // image 0: best is caption 2 (wrong), then caption 1 (right): rank 1 -> miss at R@1, hit at R@5.
      [0.1, 0.5, 0.9, 0.0, 0.0],
      // image 1: caption 2 is top: hit.
      [0.0, 0.0, 0.8, 0.1, 0.1],
      // image 2: captions 3/4 below four others? only 3 wrong captions exist: rank 3 -> hit at R@5.
      [0.9, 0.9, 0.9, 0.1, 0.2],
    ].flat());
    const m = retrievalFromSimilarity(sim, 3, captionImage);
    expect(m['image_to_text_R@1']).toBeCloseTo(100 / 3, 10);
    expect(m['image_to_text_R@5']).toBe(100);
    // Text->image per caption (columns): c0 -> img2 0.9 > img0 0.1: miss; c1: img2 0.9 > 0.5: miss;
    // c2: img0 0.9 > img1 0.8 and img2 0.9: miss (rank 2); c3: img1 0.1 ties img2 0.1: tie counts against: miss;
    // c4: img2 0.2 > 0.1, 0.0: hit.
    expect(m['text_to_image_R@1']).toBeCloseTo(20, 10);
    // With 3 images every caption is within the top 3 <= 5.
    expect(m['text_to_image_R@5']).toBe(100);
    expect(m['text_to_image_R@10']).toBe(100);
    const six = [m['image_to_text_R@1'], m['image_to_text_R@5'], m['image_to_text_R@10'], m['text_to_image_R@1'], m['text_to_image_R@5'], m['text_to_image_R@10']];
    expect(m.mean_recall).toBeCloseTo(six.reduce((a, b) => a + b) / 6, 10);
  });

  it('a collapsed model (all scores equal) gets no R@1 credit', () => {
    const m = retrievalFromSimilarity(new Float32Array(15).fill(0.3), 3, captionImage);
    expect(m['image_to_text_R@1']).toBe(0);
    expect(m['text_to_image_R@1']).toBe(0);
  });

  it('a NaN model (all scores NaN) scores nothing, in retrieval and zero-shot alike', () => {
    const m = retrievalFromSimilarity(new Float32Array(15).fill(NaN), 3, captionImage);
    expect([m['image_to_text_R@1'], m['text_to_image_R@1']]).toEqual([0, 0]);
    expect(zeroShotTop1(new Float32Array(6).fill(NaN), 3, 2, Int32Array.from([0, 1, 0]))).toBe(0);
    // A NaN on a wrong item alone also counts against the query.
    expect(zeroShotTop1(Float32Array.from([0.9, NaN]), 1, 2, Int32Array.from([0]))).toBe(0);
  });

  it('R@k needs fewer than k wrong items at or above the right one', () => {
    // 12 images, one caption each; caption i's own image sits at rank i (i wrong images above it).
    const n = 12;
    const sim = new Float32Array(n * n);
    for (let c = 0; c < n; c++) for (let i = 0; i < n; i++) sim[i * n + c] = i === c ? 0.5 : i < c ? 0.9 : 0.1;
    const m = retrievalFromSimilarity(sim, n, Int32Array.from([...Array(n).keys()]));
    expect(m['text_to_image_R@1']).toBeCloseTo(100 / 12, 10);
    expect(m['text_to_image_R@5']).toBeCloseTo(500 / 12, 10);
    expect(m['text_to_image_R@10']).toBeCloseTo(1000 / 12, 10);
  });

  it('similarity is a row-by-row dot product', () => {
    const s = similarity(Float32Array.from([1, 0, 0, 1]), 2, Float32Array.from([1, 2, 3, 4, 5, 6]), 3, 2);
    expect([...s]).toEqual([1, 3, 5, 2, 4, 6]);
    expect(() => similarity(new Float32Array(3), 2, new Float32Array(4), 2, 2)).toThrow(/expected/);
  });

  /** The protocol written out query by query over the whole matrix, independent of the code under test. */
  function byDefinition(sim: Float32Array, nImages: number, captionImage: Int32Array): number[] {
    const nCaptions = captionImage.length;
    const above = (wrong: number, right: number): boolean => !(wrong < right);
    const imageRanks: number[] = [];
    for (let i = 0; i < nImages; i++) {
      const own = [...captionImage.keys()].filter((c) => captionImage[c] === i);
      if (own.length === 0) continue;
      const best = Math.max(...own.map((c) => sim[i * nCaptions + c]!));
      imageRanks.push([...captionImage.keys()].filter((c) => captionImage[c] !== i && above(sim[i * nCaptions + c]!, best)).length);
    }
    const textRanks = [...captionImage].map((own, c) =>
      [...Array(nImages).keys()].filter((i) => i !== own && above(sim[i * nCaptions + c]!, sim[own * nCaptions + c]!)).length,
    );
    const recall = (ranks: number[], k: number): number => (100 * ranks.filter((r) => r < k).length) / ranks.length;
    return [...RECALL_KS.map((k) => recall(imageRanks, k)), ...RECALL_KS.map((k) => recall(textRanks, k))];
  }
  const six = (m: RetrievalMetrics): number[] => (['image_to_text', 'text_to_image'] as const).flatMap((dir) => RECALL_KS.map((k) => m[`${dir}_R@${k}`]));

  /** Blocked retrieval of these embeddings, at block sizes from 1 up, against the definition over the full matrix. */
  function expectBlockedEqualsFull(images: Float32Array, nImages: number, texts: Float32Array, d: number, captionImage: Int32Array): RetrievalMetrics {
    const sim = similarity(images, nImages, texts, captionImage.length, d);
    const expected = byDefinition(sim, nImages, captionImage);
    const [first, ...rest] = [1, 3, 4, 5, 8, 26, 27, 256].map((block) => retrievalFromEmbeddings(images, nImages, texts, d, captionImage, block));
    expect(six(first!)).toEqual(expected);
    expect({ images: first!.images, captions: first!.captions }).toEqual({ images: nImages, captions: captionImage.length });
    for (const m of rest) expect(m).toEqual(first);
    return first!;
  }

  it('blocked retrieval from embeddings equals the full similarity matrix, ties and NaNs included', () => {
    const rng = Rng.fromSeed(7, 99);
    const d = 8;
    // 27 images (not a multiple of 4 or of most blocks), two of them without captions, 1-3 captions each, 50 in
    // all: enough for ranks past the cap of 10.
    const nImages = 27;
    const owners = [...Array(nImages).keys()].filter((i) => i !== 4 && i !== 19).flatMap((i) => Array(1 + (i % 3)).fill(i) as number[]);
    const captionImage = Int32Array.from(owners);
    // Small integers make exact ties common; a copied image and a copied caption make whole rows tie.
    const int = (): number => rng.int(9) - 4;
    const images = Float32Array.from({ length: nImages * d }, int);
    images.copyWithin(7 * d, 3 * d, 4 * d);
    const texts = Float32Array.from({ length: owners.length * d }, (_, x) => images[owners[Math.floor(x / d)]! * d + (x % d)]! + (rng.float() < 0.7 ? int() : 0));
    texts.copyWithin(10 * d, 9 * d, 10 * d);

    const clean = expectBlockedEqualsFull(images, nImages, texts, d, captionImage);
    // Neither degenerate nor perfect, so that the comparison means something, with image queries past the cap.
    for (const r of [clean['image_to_text_R@1'], clean['text_to_image_R@1']]) expect(r > 0 && r < 100, `${r}`).toBe(true);
    expect(clean['image_to_text_R@10']).toBeLessThan(100);
    // Every caption count modulo 4, for the captions the 4x4 tiles leave over.
    for (const n of [47, 48, 49]) expectBlockedEqualsFull(images, nImages, texts.subarray(0, n * d), d, captionImage.subarray(0, n));

    // A NaN image and a NaN caption: every score they take part in is NaN, and outranks every right item.
    images[12 * d + 2] = NaN;
    texts[30 * d + 5] = NaN;
    const nan = expectBlockedEqualsFull(images, nImages, texts, d, captionImage);
    expect([nan['image_to_text_R@1'], nan['text_to_image_R@1']]).toEqual([0, 0]);
    expect(nan.mean_recall).toBeGreaterThan(0);
  });

  it('blocked retrieval scores a pair as the float32 matrix holds it: one summation order, one rounding', () => {
    // Caption 0's wrong image scores 1 - 2^-30 in float64, which float32 rounds to its right image's 1: a tie.
    const rounding = expectBlockedEqualsFull(Float32Array.from([1, 0, 1, -(2 ** -30)]), 2, Float32Array.from([1, 1, 0, -1]), 2, Int32Array.from([0, 1]));
    expect(rounding['text_to_image_R@1']).toBe(50);
    // Images 0 and 1 are one vector, and caption 0 scores (1 + 2^60) - 2^60 with either: 0 summed left to right,
    // 1 right to left. Its right image ties the wrong one only if every path sums in the same order.
    const big = 2 ** 30;
    const images = Float32Array.from([[1, big, big], [1, big, big], [0, 0, 1], [0, -1, 0]].flat());
    const texts = Float32Array.from([[1, big, -big], [1, 0, 0], [0, 0, 1], [0, -1, 0]].flat());
    const order = expectBlockedEqualsFull(images, 4, texts, 3, Int32Array.from([0, 1, 2, 3]));
    // Captions 0 and 1 tie with the copy, caption 2 loses to both copies, caption 3 wins.
    expect(order['text_to_image_R@1']).toBe(25);
  });

  it('blocked retrieval rejects embeddings of the wrong shape and captions of no image', () => {
    const one = Int32Array.from([0, 1]);
    expect(() => retrievalFromEmbeddings(new Float32Array(4), 2, new Float32Array(3), 2, one)).toThrow(/expected embeddings/);
    expect(() => retrievalFromEmbeddings(new Float32Array(4), 2, new Float32Array(4), 2, Int32Array.from([0, 2]))).toThrow(/caption 1 points at image 2/);
  });

  it('zero-shot top-1 counts the labelled images whose own class prompt wins', () => {
    const sim = Float32Array.from([
      [0.9, 0.1],
      [0.8, 0.2],
      [0.5, 0.5],
      [0.0, 1.0],
    ].flat());
    // Image 2 ties (a miss); image 3 is unlabelled.
    expect(zeroShotTop1(sim, 4, 2, Int32Array.from([0, 1, 0, -1]))).toBeCloseTo(100 / 3, 10);
  });
});

describe('schedule and recipe', () => {
  it("follows open_clip's cosine_lr: linear warm-up then half cosine", () => {
    expect(cosineLr(0, 1e-3, 10, 110)).toBeCloseTo(1e-4, 15);
    expect(cosineLr(9, 1e-3, 10, 110)).toBeCloseTo(1e-3, 15);
    expect(cosineLr(10, 1e-3, 10, 110)).toBeCloseTo(1e-3, 15);
    expect(cosineLr(60, 1e-3, 10, 110)).toBeCloseTo(0.5e-3, 15);
    expect(cosineLr(109, 1e-3, 10, 110)).toBeCloseTo(0.5 * (1 + Math.cos((Math.PI * 99) / 100)) * 1e-3, 15);
    expect(cosineLr(0, 2, 0, 4)).toBe(2);
  });

  it('takes RemoteCLIP defaults for ViT and the ResNet betas/eps for ResNet; train.json wins', () => {
    const vit = resolveRecipe(loadModelConfig('ViT-B-32'), {});
    expect(vit.family).toBe('vit');
    expect({ lr: vit.lr, batch: vit.batchSize, ...vit.hyper }).toEqual({ lr: 4e-5, batch: 256, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2, gradClip: 1 });
    const rn = resolveRecipe(loadModelConfig('RN50'), {});
    expect(rn.family).toBe('resnet');
    expect([rn.lr, rn.hyper.beta2, rn.hyper.eps]).toEqual([RECIPES.resnet.lr, 0.999, 1e-8]);
    const custom = resolveRecipe(loadModelConfig('ViT-B-32'), { lr: 1e-3, beta2: 0.95, augment: { dihedral: false }, maxSteps: 7 });
    expect([custom.lr, custom.hyper.beta2, custom.augment.dihedral, custom.augment.randomResizedCrop, custom.epochs]).toEqual([1e-3, 0.95, false, true, undefined]);
  });

  it('plans steps from the data: epochs, a maxSteps cut, a batch shrunk to a small dataset', () => {
    const r = resolveRecipe(loadModelConfig('ViT-B-32'), { batchSize: 8, epochs: 3 });
    expect(planSteps(r, 50)).toEqual({ batchSize: 8, stepsPerEpoch: 6, epochs: 3, totalSteps: 18, warmupSteps: 2 });
    expect(planSteps({ ...r, maxSteps: 10 }, 50).totalSteps).toBe(10);
    expect(planSteps({ ...r, epochs: undefined, maxSteps: 10 }, 50)).toMatchObject({ totalSteps: 10, epochs: 2 });
    expect(planSteps(resolveRecipe(loadModelConfig('ViT-B-32'), {}), 100).batchSize).toBe(100);
    expect(() => planSteps(r, 0)).toThrow(/no train-split rows/);
  });
});
