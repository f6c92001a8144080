/**
 * Retrieval metrics with the RSITMD/RSICD protocol: an image has several captions, each caption one image; an
 * image query hits at k when ANY of its captions ranks in the top k. Ties count against the query (a wrong item
 * scoring equal to the best right one outranks it), so a collapsed model cannot score well. Percent, 0-100.
 */
export const RECALL_KS = [1, 5, 10] as const;

export interface RetrievalMetrics {
  'image_to_text_R@1': number;
  'image_to_text_R@5': number;
  'image_to_text_R@10': number;
  'text_to_image_R@1': number;
  'text_to_image_R@5': number;
  'text_to_image_R@10': number;
  /** Mean of the six recalls (mR). */
  mean_recall: number;
  images: number;
  captions: number;
  /** Zero-shot top-1 accuracy over the split's labels with "a satellite photo of {label}.", when labels exist. */
  zeroshot_top1?: number;
}

/** Rows of `a` [n, d] dotted with rows of `b` [m, d]: [n, m]. */
export function similarity(a: Float32Array, n: number, b: Float32Array, m: number, d: number): Float32Array {
  if (a.length !== n * d || b.length !== m * d) throw new Error(`similarity: expected [${n},${d}] and [${m},${d}]`);
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += a[i * d + k]! * b[j * d + k]!;
      out[i * m + j] = s;
    }
  }
  return out;
}

/**
 * Whether a wrong item's score puts it at or above the right one's. A NaN on either side counts against the query
 * (`x >= NaN` is false, which once gave an all-NaN model perfect recall).
 */
const outranks = (wrong: number, right: number): boolean => !(wrong < right);

const pct = (hits: number, n: number): number => (n === 0 ? 0 : (100 * hits) / n);

/** `sim` is [nImages, nCaptions]; `captionImage[c]` the image of caption c. */
export function retrievalFromSimilarity(sim: Float32Array, nImages: number, captionImage: Int32Array): RetrievalMetrics {
  const nCaptions = captionImage.length;
  if (sim.length !== nImages * nCaptions) throw new Error(`retrieval: similarity is not [${nImages},${nCaptions}]`);
  const i2t = [0, 0, 0];
  const t2i = [0, 0, 0];
  let queries = 0;
  for (let i = 0; i < nImages; i++) {
    const row = i * nCaptions;
    let best = -Infinity;
    let owned = 0;
    for (let c = 0; c < nCaptions; c++) {
      if (captionImage[c] === i) {
        owned++;
        best = Math.max(best, sim[row + c]!);
      }
    }
    if (owned === 0) continue;
    queries++;
    let rank = 0;
    for (let c = 0; c < nCaptions; c++) if (captionImage[c] !== i && outranks(sim[row + c]!, best)) rank++;
    RECALL_KS.forEach((k, j) => (i2t[j]! += rank < k ? 1 : 0));
  }
  for (let c = 0; c < nCaptions; c++) {
    const own = captionImage[c]!;
    if (own < 0 || own >= nImages) throw new Error(`retrieval: caption ${c} points at image ${own} of ${nImages}`);
    const s = sim[own * nCaptions + c]!;
    let rank = 0;
    for (let i = 0; i < nImages; i++) if (i !== own && outranks(sim[i * nCaptions + c]!, s)) rank++;
    RECALL_KS.forEach((k, j) => (t2i[j]! += rank < k ? 1 : 0));
  }
  const r = [...i2t.map((h) => pct(h, queries)), ...t2i.map((h) => pct(h, nCaptions))];
  return {
    'image_to_text_R@1': r[0]!,
    'image_to_text_R@5': r[1]!,
    'image_to_text_R@10': r[2]!,
    'text_to_image_R@1': r[3]!,
    'text_to_image_R@5': r[4]!,
    'text_to_image_R@10': r[5]!,
    mean_recall: r.reduce((a, b) => a + b, 0) / r.length,
    images: nImages,
    captions: nCaptions,
  };
}

/**
 * Share of images whose most similar class prompt is their label (`imageClass[i]` indexes the classes; -1 for an
 * unlabelled image, which is left out). Ties count as misses.
 */
export function zeroShotTop1(sim: Float32Array, nImages: number, nClasses: number, imageClass: Int32Array): number {
  let hits = 0;
  let n = 0;
  for (let i = 0; i < nImages; i++) {
    const truth = imageClass[i]!;
    if (truth < 0) continue;
    n++;
    const own = sim[i * nClasses + truth]!;
    let beaten = false;
    for (let k = 0; k < nClasses && !beaten; k++) beaten = k !== truth && outranks(sim[i * nClasses + k]!, own);
    if (!beaten) hits++;
  }
  return pct(hits, n);
}
