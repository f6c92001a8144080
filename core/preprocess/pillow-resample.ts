/**
 * Pillow 9.4's resampling on interleaved 8-bit pixels, reproduced operation for operation (libImaging/Resample.c
 * and Geometry.c) so that our shards hold the same bytes open_clip's preprocessing produces.
 *
 * Bicubic: separable, horizontal pass first, kernel a = -0.5 with support scaled by the downscale factor,
 * coefficients normalised per output pixel and quantised to 22-bit fixed point, each pass rounded and clamped to
 * uint8. Only the output window [x0, x0+w) x [y0, y0+h) is computed: every output pixel depends only on its own
 * coefficients, so computing just the centre crop gives the same bytes as resizing everything and cropping.
 */

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const CLIP_HIGH = (1 << PRECISION_BITS) * 256;
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

const clip8 = (v: number): number => (v >= CLIP_HIGH ? 255 : v <= 0 ? 0 : v >> PRECISION_BITS);

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

/** Pillow `Image.resize(size, BICUBIC)` on 8-bit channels, restricted to a window of the result. */
export function resizeBicubic(src: Raster, win: Window): Raster {
  const needH = win.outWidth !== src.width;
  const needV = win.outHeight !== src.height;
  const v = needV ? coefficients(src.height, win.outHeight) : undefined;
  if (!needH) return v ? verticalPass(src, v, win, 0, win.x0) : crop(src, win.x0, win.y0, win.width, win.height);
  // The horizontal pass covers only the input rows the vertical pass will read.
  const last = win.y0 + win.height - 1;
  const yFirst = v ? v.bounds[win.y0 * 2]! : win.y0;
  const yEnd = v ? v.bounds[last * 2]! + v.bounds[last * 2 + 1]! : last + 1;
  const rows: Raster = {
    data: horizontalPass(src, coefficients(src.width, win.outWidth), win, yFirst, yEnd - yFirst),
    width: win.width,
    height: yEnd - yFirst,
    channels: src.channels,
  };
  return v ? verticalPass(rows, v, win, yFirst, 0) : rows;
}

function horizontalPass(src: Raster, h: Coeffs, win: Window, yFirst: number, rows: number): Uint8Array {
  const { width: inW, channels: c, data } = src;
  const out = new Uint8Array(rows * win.width * c);
  const { ksize, bounds, kk } = h;
  // Products stay below 2^31 (255 * 2^22 * the kernel's positive mass), so int32 arithmetic is exact.
  for (let y = 0; y < rows; y++) {
    const inRow = (y + yFirst) * inW * c;
    let o = y * win.width * c;
    for (let xo = 0; xo < win.width; xo++) {
      const xx = xo + win.x0;
      const xmax = bounds[xx * 2 + 1]!;
      const kOff = xx * ksize;
      const p0 = inRow + bounds[xx * 2]! * c;
      if (c === 3) {
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let x = 0, p = p0; x < xmax; x++, p += 3) {
          const k = kk[kOff + x]!;
          s0 = (s0 + Math.imul(data[p]!, k)) | 0;
          s1 = (s1 + Math.imul(data[p + 1]!, k)) | 0;
          s2 = (s2 + Math.imul(data[p + 2]!, k)) | 0;
        }
        out[o++] = clip8(s0);
        out[o++] = clip8(s1);
        out[o++] = clip8(s2);
      } else {
        for (let ch = 0; ch < c; ch++) {
          let ss = HALF;
          for (let x = 0, p = p0 + ch; x < xmax; x++, p += c) ss = (ss + Math.imul(data[p]!, kk[kOff + x]!)) | 0;
          out[o++] = clip8(ss);
        }
      }
    }
  }
  return out;
}

function verticalPass(src: Raster, v: Coeffs, win: Window, rowOffset: number, x0: number): Raster {
  const { width: inW, channels: c, data } = src;
  const rowLen = win.width * c;
  const out = new Uint8Array(win.height * rowLen);
  const acc = new Int32Array(rowLen);
  const { ksize, bounds, kk } = v;
  for (let yo = 0; yo < win.height; yo++) {
    const yy = yo + win.y0;
    const ymin = bounds[yy * 2]! - rowOffset;
    const ymax = bounds[yy * 2 + 1]!;
    acc.fill(HALF);
    // Tap-outer order walks the rows sequentially; the sum per pixel is the same integer either way.
    for (let y = 0; y < ymax; y++) {
      const k = kk[yy * ksize + y]!;
      const base = (ymin + y) * inW * c + x0 * c;
      for (let i = 0; i < rowLen; i++) acc[i] = (acc[i]! + Math.imul(data[base + i]!, k)) | 0;
    }
    const o = yo * rowLen;
    for (let i = 0; i < rowLen; i++) out[o + i] = clip8(acc[i]!);
  }
  return { data: out, width: win.width, height: win.height, channels: c };
}

export function crop(src: Raster, x0: number, y0: number, width: number, height: number): Raster {
  const c = src.channels;
  const out = new Uint8Array(width * height * c);
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
