import { describe, expect, it } from 'vitest';
import { retrievalFromSimilarity, similarity, zeroShotTop1 } from '../../worker/train/metrics.ts';
import { cosineLr } from '../../worker/train/schedule.ts';
import { RECIPES, planSteps, resolveRecipe } from '../../worker/train/recipe.ts';
import { loadModelConfig } from '../../worker/models/config.ts';

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
