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

/**
 * Ranks at or past this count miss at every k, so per-query counters stop there: the blocked evaluation keeps
 * one byte per query instead of a similarity matrix.
 */
const RANK_CAP = RECALL_KS[RECALL_KS.length - 1];
/** Images per tile of the blocked evaluation: 256 embeddings of 512 floats (512 KiB) stay in a core's L2. */
export const RETRIEVAL_BLOCK = 256;

/**
 * `a[ao..ao+d) . b[bo..bo+d)`, summed in index order. Every score of this module is summed in this order (dot4x4
 * too), so a pair gets the same bits whichever path scores it, which the blocked evaluation's ties rely on.
 */
function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, d: number): number {
  let s = 0;
  for (let k = 0; k < d; k++) s += a[ao + k]! * b[bo + k]!;
  return s;
}

/**
 * dot of the four rows of `a` from offset `ao` with the four rows of `b` from `bo`, row r with row q into
 * `out[4 * r + q]`: each loaded value feeds four products and the sixteen sums are independent, about three
 * times dot's pairs per second in V8.
 */
function dot4x4(a: Float32Array, ao: number, b: Float32Array, bo: number, d: number, out: Float32Array): void {
  const a1 = ao + d, a2 = a1 + d, a3 = a2 + d;
  const b1 = bo + d, b2 = b1 + d, b3 = b2 + d;
  let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
  let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
  for (let k = 0; k < d; k++) {
    const v0 = b[bo + k]!, v1 = b[b1 + k]!, v2 = b[b2 + k]!, v3 = b[b3 + k]!;
    let p = a[ao + k]!;
    s00 += p * v0; s01 += p * v1; s02 += p * v2; s03 += p * v3;
    p = a[a1 + k]!;
    s10 += p * v0; s11 += p * v1; s12 += p * v2; s13 += p * v3;
    p = a[a2 + k]!;
    s20 += p * v0; s21 += p * v1; s22 += p * v2; s23 += p * v3;
    p = a[a3 + k]!;
    s30 += p * v0; s31 += p * v1; s32 += p * v2; s33 += p * v3;
  }
  out[0] = s00; out[1] = s01; out[2] = s02; out[3] = s03;
  out[4] = s10; out[5] = s11; out[6] = s12; out[7] = s13;
  out[8] = s20; out[9] = s21; out[10] = s22; out[11] = s23;
  out[12] = s30; out[13] = s31; out[14] = s32; out[15] = s33;
}

/** Rows of `a` [n, d] dotted with rows of `b` [m, d]: [n, m]. */
export function similarity(a: Float32Array, n: number, b: Float32Array, m: number, d: number): Float32Array {
  if (a.length !== n * d || b.length !== m * d) throw new Error(`similarity: expected [${n},${d}] and [${m},${d}]`);
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) out[i * m + j] = dot(a, i * d, b, j * d, d);
  return out;
}

/**
 * Whether a wrong item's score puts it at or above the right one's. A NaN on either side counts against the query
 * (`x >= NaN` is false, which once gave an all-NaN model perfect recall).
 */
const outranks = (wrong: number, right: number): boolean => !(wrong < right);

const pct = (hits: number, n: number): number => (n === 0 ? 0 : (100 * hits) / n);

/**
 * The protocol's per-query ranks, fed the score of every (image, caption) pair once, in any order. The right
 * scores are known up front (`ownScore[c]`: caption c with its image), so neither direction needs a whole row.
 */
class Ranks {
  private readonly bestOwn: Float32Array;
  private readonly captioned: Uint8Array;
  private readonly imageRank: Uint8Array;
  private readonly textRank: Uint8Array;

  constructor(
    private readonly nImages: number,
    private readonly captionImage: Int32Array,
    private readonly ownScore: Float32Array,
  ) {
    // An image query ranks its best caption; Math.max keeps a NaN, which then counts against it.
    this.bestOwn = new Float32Array(nImages).fill(-Infinity);
    this.captioned = new Uint8Array(nImages);
    captionImage.forEach((own, c) => {
      this.bestOwn[own] = Math.max(this.bestOwn[own]!, ownScore[c]!);
      this.captioned[own] = 1;
    });
    this.imageRank = new Uint8Array(nImages);
    this.textRank = new Uint8Array(captionImage.length);
  }

  /** `score` must be float32-exact, as in a Float32Array, so that it compares with the right scores bit for bit. */
  add(image: number, caption: number, score: number): void {
    if (this.captionImage[caption] === image) return;
    if (this.imageRank[image]! < RANK_CAP && outranks(score, this.bestOwn[image]!)) this.imageRank[image]!++;
    if (this.textRank[caption]! < RANK_CAP && outranks(score, this.ownScore[caption]!)) this.textRank[caption]!++;
  }

  metrics(): RetrievalMetrics {
    const nCaptions = this.captionImage.length;
    let queries = 0;
    const i2t = RECALL_KS.map(() => 0);
    for (let i = 0; i < this.nImages; i++) {
      if (!this.captioned[i]) continue;
      queries++;
      RECALL_KS.forEach((k, j) => (i2t[j]! += this.imageRank[i]! < k ? 1 : 0));
    }
    const t2i = RECALL_KS.map((k) => this.textRank.reduce((hits, rank) => hits + (rank < k ? 1 : 0), 0));
    const r = [...i2t.map((h) => pct(h, queries)), ...t2i.map((h) => pct(h, nCaptions))];
    return {
      'image_to_text_R@1': r[0]!,
      'image_to_text_R@5': r[1]!,
      'image_to_text_R@10': r[2]!,
      'text_to_image_R@1': r[3]!,
      'text_to_image_R@5': r[4]!,
      'text_to_image_R@10': r[5]!,
      mean_recall: r.reduce((a, b) => a + b, 0) / r.length,
      images: this.nImages,
      captions: nCaptions,
    };
  }
}

/**
 * The recalls of images [nImages, d] and captions [captionImage.length, d] (`captionImage[c]`: the image of
 * caption c), scored by dot product, without their [nImages, nCaptions] similarity matrix: memory is the
 * embeddings plus a few bytes per query. Tiles of `block` images meet every caption in turn, so each caption
 * embedding is read once per tile while the tile's images stay in cache.
 */
export function retrievalFromEmbeddings(
  images: Float32Array,
  nImages: number,
  texts: Float32Array,
  d: number,
  captionImage: Int32Array,
  block = RETRIEVAL_BLOCK,
): RetrievalMetrics {
  const nCaptions = captionImage.length;
  if (images.length !== nImages * d || texts.length !== nCaptions * d) {
    throw new Error(`retrieval: expected embeddings [${nImages},${d}] and [${nCaptions},${d}]`);
  }
  if (!(block >= 1)) throw new Error(`retrieval: block must be at least 1, got ${block}`);
  captionImage.forEach((own, c) => {
    if (own < 0 || own >= nImages) throw new Error(`retrieval: caption ${c} points at image ${own} of ${nImages}`);
  });
  const ranks = new Ranks(nImages, captionImage, Float32Array.from(captionImage, (own, c) => dot(images, own * d, texts, c * d, d)));
  const single = (i0: number, i1: number, c0: number, c1: number): void => {
    for (let c = c0; c < c1; c++) for (let i = i0; i < i1; i++) ranks.add(i, c, Math.fround(dot(images, i * d, texts, c * d, d)));
  };
  const tile = new Float32Array(16);
  const captionQuads = nCaptions - (nCaptions % 4);
  for (let i0 = 0; i0 < nImages; i0 += block) {
    const i1 = Math.min(nImages, i0 + block);
    const imageQuads = i1 - ((i1 - i0) % 4);
    for (let c = 0; c < captionQuads; c += 4) {
      for (let i = i0; i < imageQuads; i += 4) {
        dot4x4(images, i * d, texts, c * d, d, tile);
        for (let t = 0; t < 16; t++) ranks.add(i + (t >> 2), c + (t & 3), tile[t]!);
      }
    }
    // The rows and columns the 4x4 tiles leave over.
    single(imageQuads, i1, 0, captionQuads);
    single(i0, i1, captionQuads, nCaptions);
  }
  return ranks.metrics();
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
