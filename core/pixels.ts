/** OpenAI CLIP normalisation constants (open_clip OPENAI_DATASET_MEAN / OPENAI_DATASET_STD). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/**
 * Per channel, the float32 value of each grey level after torchvision ToTensor + Normalize. Each step is one
 * float32 operation (`u8/255`, `- mean`, `/ std`), and a double result rounded once to float32 equals the
 * float32 operation, so this matches torch bit for bit.
 */
const LUT: Float32Array[] = [0, 1, 2].map((c) => {
  const mean = Math.fround(CLIP_MEAN[c]!);
  const std = Math.fround(CLIP_STD[c]!);
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = Math.fround(Math.fround(Math.fround(v / 255) - mean) / std);
  return t;
});

/** uint8 HWC [n,S,S,3] -> normalised float32 CHW [n,3,S,S]. */
export function normalizeHwcToChw(hwc: Uint8Array, n: number, size: number): Float32Array {
  const plane = size * size;
  if (hwc.length !== n * plane * 3) {
    throw new Error(`normalizeHwcToChw: expected ${n}x${size}x${size}x3 = ${n * plane * 3} bytes, got ${hwc.length}`);
  }
  const out = new Float32Array(n * 3 * plane);
  for (let i = 0; i < n; i++) {
    const src = i * plane * 3;
    const dst = i * 3 * plane;
    for (let c = 0; c < 3; c++) {
      const lut = LUT[c]!;
      const o = dst + c * plane;
      for (let p = 0; p < plane; p++) out[o + p] = lut[hwc[src + p * 3 + c]!]!;
    }
  }
  return out;
}
