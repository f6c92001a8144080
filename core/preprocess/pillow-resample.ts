import { Arena, simdKernels } from './resample-wasm.ts';

/**
 * Pillow 9.4's resampling on interleaved 8-bit pixels, reproduced operation for operation (libImaging/Resample.c
 * and Geometry.c) so that our shards hold the same bytes open_clip's preprocessing produces.
 *
 * Bicubic: separable, horizontal pass first, kernel a = -0.5 with support scaled by the downscale factor,
 * coefficients normalised per output pixel and quantised to 22-bit fixed point, each pass rounded and clamped to
 * uint8 (the multiply-add loops run as WebAssembly SIMD, resample-wasm.ts). Only the output window [x0, x0+w) x [y0, y0+h) is computed: every output pixel depends only on its own
 * coefficients, so computing just the centre crop gives the same bytes as resizing everything and cropping.
 */

const PRECISION_BITS = 32 - 8 - 2;
const BICUBIC_SUPPORT = 2;

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coeffs {
  ksize: number;
  /** Per output pixel: first input index and tap count. */
  bounds: Int32Array;
  /** [outSize, ksize] fixed-point weights. */
  kk: Int32Array;
}

/** precompute_coeffs + normalize_coeffs_8bpc. */
function coefficients(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C casts truncate toward zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x]! / ww : w[x]!;
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * (1 << PRECISION_BITS)) : Math.trunc(0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

export interface Raster {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

export interface Window {
  /** Full resized size (what Pillow's resize would return). */
  outWidth: number;
  outHeight: number;
  /** The part of it to compute. */
  x0: number;
  y0: number;
  width: number;
  height: number;
}

/**
 * Pillow `Image.resize(size, BICUBIC)` on 8-bit channels (1 to 4), restricted to a window of the result, which is
 * written into `into` when given (its length must be the window's bytes).
 */
export function resizeBicubic(src: Raster, win: Window, into?: Uint8Array): Raster {
  const needH = win.outWidth !== src.width;
  const needV = win.outHeight !== src.height;
  if (!needH && !needV) return crop(src, win.x0, win.y0, win.width, win.height, into);
  const c = src.channels;
  if (c < 1 || c > 4) throw new Error(`resizeBicubic: ${c} channels (1 to 4 supported)`);
  const k = simdKernels();
  const arena = new Arena(k);
  const v = needV ? coefficients(src.height, win.outHeight) : undefined;
  // Only the input rows the vertical pass reads (or the window's rows when there is none).
  const last = win.y0 + win.height - 1;
  const yFirst = v ? v.bounds[win.y0 * 2]! : win.y0;
  const yEnd = v ? v.bounds[last * 2]! + v.bounds[last * 2 + 1]! : last + 1;
  const rows = yEnd - yFirst;
  let rowLen = src.width * c;
  let cur = arena.alloc(rows * rowLen);
  arena.bytes(cur, rows * rowLen).set(src.data.subarray(yFirst * rowLen, yEnd * rowLen));
  let colOffset = win.x0 * c;
  if (needH) {
    const h = coefficients(src.width, win.outWidth);
    // Per output pixel and tap pair: 8 int16 high parts, then 8 low parts (resample-wasm.ts horizontalBody).
    const pairs = Math.ceil(h.ksize / 2);
    const bounds = arena.alloc(win.width * 8);
    const kk = arena.alloc(win.width * pairs * 32);
    const swizzle = arena.alloc(16);
    const out = arena.alloc(rows * win.width * c);
    // Views only after the last alloc: growing the memory detaches earlier ones.
    const b = arena.ints(bounds, win.width * 2);
    const split = arena.shorts(kk, win.width * pairs * 16).fill(0);
    for (let x = 0; x < win.width; x++) {
      const from = (x + win.x0) * 2;
      const taps = h.bounds[from + 1]!;
      b[x * 2] = h.bounds[from]! * c;
      b[x * 2 + 1] = Math.ceil(taps / 2);
      for (let t = 0; t < taps; t++) {
        const coeff = h.kk[(x + win.x0) * h.ksize + t]!;
        const at = (x * pairs + (t >> 1)) * 16 + (t & 1);
        for (let lane = 0; lane < 8; lane += 2) {
          split[at + lane] = coeff >> 11;
          split[at + 8 + lane] = coeff & 2047;
        }
      }
    }
    // int16 lanes (channel j of tap t, channel j of tap t+1) from the pair's 2c bytes; index 16+ reads as 0.
    arena.bytes(swizzle, 16).set([0, 1, 2, 3].flatMap((j) => [j, 0xff, c + j, 0xff]));
    k.horizontal(cur, rowLen, rows, win.width, c, bounds, kk, pairs * 32, out, swizzle);
    cur = out;
    rowLen = win.width * c;
    colOffset = 0;
  }
  const outLen = win.width * c;
  const result = (at: number): Raster => ({ data: copyOut(arena.bytes(at, win.height * outLen), into), width: win.width, height: win.height, channels: c });
  if (!v) return result(cur);
  const kk = arena.alloc(v.kk.length * 4);
  arena.ints(kk, v.kk.length).set(v.kk);
  const dst = arena.alloc(win.height * outLen);
  for (let yo = 0; yo < win.height; yo++) {
    const yy = yo + win.y0;
    const from = cur + (v.bounds[yy * 2]! - yFirst) * rowLen + colOffset;
    k.vertical(from, rowLen, outLen, kk + yy * v.ksize * 4, v.bounds[yy * 2 + 1]!, dst + yo * outLen);
  }
  return result(dst);
}

/** The kernels' memory is reused by the next resize, so results leave it as a copy. */
function copyOut(view: Uint8Array, into: Uint8Array | undefined): Uint8Array {
  if (!into) return view.slice();
  if (into.length !== view.length) throw new Error(`resize: output holds ${into.length} bytes, need ${view.length}`);
  into.set(view);
  return into;
}

export function crop(src: Raster, x0: number, y0: number, width: number, height: number, into?: Uint8Array): Raster {
  const c = src.channels;
  const out = into ?? new Uint8Array(width * height * c);
  if (out.length !== width * height * c) throw new Error(`crop: output holds ${out.length} bytes, need ${width * height * c}`);
  for (let y = 0; y < height; y++) {
    const from = ((y + y0) * src.width + x0) * c;
    out.set(src.data.subarray(from, from + width * c), y * width * c);
  }
  return { data: out, width, height, channels: c };
}

/** Pillow NEAREST (ImagingScaleAffine: coordinates accumulated in doubles, truncated), used for "P" and "1" images. */
export function resizeNearest(src: Raster, win: Window): Raster {
  const c = src.channels;
  const sx = src.width / win.outWidth;
  const sy = src.height / win.outHeight;
  const xin = new Int32Array(win.outWidth);
  let xo = sx * 0.5;
  for (let x = 0; x < win.outWidth; x++, xo += sx) xin[x] = Math.trunc(xo);
  const out = new Uint8Array(win.width * win.height * c);
  let yo = sy * 0.5;
  for (let y = 0; y < win.y0; y++) yo += sy;
  for (let y = 0; y < win.height; y++, yo += sy) {
    const row = Math.trunc(yo) * src.width * c;
    for (let x = 0; x < win.width; x++) {
      const from = row + xin[x + win.x0]! * c;
      const to = (y * win.width + x) * c;
      for (let ch = 0; ch < c; ch++) out[to + ch] = src.data[from + ch]!;
    }
  }
  return { data: out, width: win.width, height: win.height, channels: c };
}
