import type { Rng } from './rng.ts';

/**
 * Training augmentation on uint8 HWC images, before normalisation: torchvision's RandomResizedCrop (the crop
 * open_clip uses, here with RemoteCLIP's scale 0.9-1.0) and the eight flips/rotations of the dihedral group,
 * which leave overhead imagery as plausible as the original.
 */
export interface AugmentOptions {
  randomResizedCrop: boolean;
  dihedral: boolean;
}

export const CROP_SCALE: readonly [number, number] = [0.9, 1.0];
export const CROP_RATIO: readonly [number, number] = [3 / 4, 4 / 3];

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** Python's round(): half to even, as torchvision's get_params uses. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision.transforms.RandomResizedCrop.get_params, draw for draw. */
export function randomResizedCropBox(rng: Rng, height: number, width: number, scale = CROP_SCALE, ratio = CROP_RATIO): CropBox {
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = roundHalfEven(w / ratio[0]);
  else if (inRatio > ratio[1]) w = roundHalfEven(h * ratio[1]);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/**
 * Bilinear resize of a crop of a square HWC image back to size x size (align_corners=False, edge-clamped, as
 * torch's upsample_bilinear2d; crops here never shrink, so antialiasing does not apply).
 */
export function resizeCrop(src: Uint8Array, size: number, box: CropBox, out: Uint8Array): void {
  const sy = box.height / size;
  const sx = box.width / size;
  const x0s = new Int32Array(size);
  const x1s = new Int32Array(size);
  const fxs = new Float64Array(size);
  for (let x = 0; x < size; x++) {
    const fx = Math.max(0, (x + 0.5) * sx - 0.5);
    const i0 = Math.min(Math.floor(fx), box.width - 1);
    x0s[x] = (box.left + i0) * 3;
    x1s[x] = (box.left + Math.min(i0 + 1, box.width - 1)) * 3;
    fxs[x] = fx - i0;
  }
  for (let y = 0; y < size; y++) {
    const fy = Math.max(0, (y + 0.5) * sy - 0.5);
    const j0 = Math.min(Math.floor(fy), box.height - 1);
    const wy = fy - j0;
    const row0 = (box.top + j0) * size * 3;
    const row1 = (box.top + Math.min(j0 + 1, box.height - 1)) * size * 3;
    for (let x = 0; x < size; x++) {
      const wx = fxs[x]!;
      const a = row0 + x0s[x]!;
      const b = row0 + x1s[x]!;
      const c = row1 + x0s[x]!;
      const d = row1 + x1s[x]!;
      const o = (y * size + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const top = src[a + ch]! + (src[b + ch]! - src[a + ch]!) * wx;
        const bot = src[c + ch]! + (src[d + ch]! - src[c + ch]!) * wx;
        out[o + ch] = Math.round(top + (bot - top) * wy);
      }
    }
  }
}

/**
 * Element `k` (0-7) of the dihedral group on a square HWC image: k % 4 quarter turns, after a horizontal
 * flip when k >= 4.
 */
export function dihedral(src: Uint8Array, size: number, k: number, out: Uint8Array): void {
  if (!Number.isInteger(k) || k < 0 || k > 7) throw new Error(`dihedral: element ${k} is not in 0..7`);
  const flip = k >= 4;
  const turns = k % 4;
  const last = size - 1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const xf = flip ? last - x : x;
      let sy: number;
      let sx: number;
      if (turns === 0) [sy, sx] = [y, xf];
      else if (turns === 1) [sy, sx] = [xf, last - y];
      else if (turns === 2) [sy, sx] = [last - y, last - xf];
      else [sy, sx] = [last - xf, y];
      const o = (y * size + x) * 3;
      const s = (sy * size + sx) * 3;
      out[o] = src[s]!;
      out[o + 1] = src[s + 1]!;
      out[o + 2] = src[s + 2]!;
    }
  }
}

/** Augments one size x size HWC image into `out` (which may not alias `src`), drawing from `rng`. */
export function augmentImage(src: Uint8Array, size: number, opts: AugmentOptions, rng: Rng, out: Uint8Array): void {
  let cur = src;
  if (opts.randomResizedCrop) {
    const cropped = new Uint8Array(size * size * 3);
    resizeCrop(cur, size, randomResizedCropBox(rng, size, size), cropped);
    cur = cropped;
  }
  if (opts.dihedral) dihedral(cur, size, rng.int(8), out);
  else out.set(cur);
}
