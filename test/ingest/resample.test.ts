import { describe, expect, it } from 'vitest';
import { resizeBicubic } from '../../core/preprocess/pillow-resample.ts';
import { resizeWindow } from '../../core/preprocess/index.ts';

/**
 * Pillow 9.4 ImagingResample (BICUBIC, 8 bpc) written plainly: full horizontal pass, full vertical pass, then the
 * crop. An independent check of the SIMD kernels and of computing only the crop window.
 */
function pillowReference(data: Uint8Array, w: number, h: number, c: number, outW: number, outH: number): Uint8Array {
  const coeffs = (inSize: number, outSize: number) => {
    const scale = inSize / outSize;
    const fs = Math.max(scale, 1);
    const support = 2 * fs;
    const out: { xmin: number; k: number[] }[] = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize);
      const w: number[] = [];
      for (let x = xmin; x < xmax; x++) {
        let t = Math.abs((x - center + 0.5) / fs);
        w.push(t < 1 ? (1.5 * t - 2.5) * t * t + 1 : t < 2 ? (((t - 5) * t + 8) * t - 4) * -0.5 : 0);
      }
      const sum = w.reduce((a, b) => a + b, 0);
      out.push({ xmin, k: w.map((v) => (sum ? v / sum : v)).map((v) => Math.trunc(v < 0 ? -0.5 + v * 2 ** 22 : 0.5 + v * 2 ** 22)) });
    }
    return out;
  };
  const clip = (v: number) => (v >= 2 ** 30 ? 255 : v <= 0 ? 0 : Math.floor(v / 2 ** 22));
  let cur = data;
  let cw = w;
  if (outW !== w) {
    const co = coeffs(w, outW);
    const t = new Uint8Array(outW * h * c);
    for (let y = 0; y < h; y++) for (let x = 0; x < outW; x++) for (let ch = 0; ch < c; ch++) {
      let s = 2 ** 21;
      co[x]!.k.forEach((k, i) => (s += cur[(y * cw + co[x]!.xmin + i) * c + ch]! * k));
      t[(y * outW + x) * c + ch] = clip(s);
    }
    cur = t;
    cw = outW;
  }
  if (outH !== h) {
    const co = coeffs(h, outH);
    const t = new Uint8Array(cw * outH * c);
    for (let y = 0; y < outH; y++) for (let x = 0; x < cw; x++) for (let ch = 0; ch < c; ch++) {
      let s = 2 ** 21;
      co[y]!.k.forEach((k, i) => (s += cur[((co[y]!.xmin + i) * cw + x) * c + ch]! * k));
      t[(y * cw + x) * c + ch] = clip(s);
    }
    cur = t;
  }
  return cur;
}

describe('bicubic resampling kernels', () => {
  const cases: [w: number, h: number, c: number, size: number][] = [
    // First, while the kernels' memory is still small: this one grows it between the buffers of one pass.
    [600, 600, 3, 224],
    [60, 45, 3, 22],
    [45, 60, 4, 22],
    [37, 100, 1, 16],
    [33, 31, 2, 40],
    [230, 230, 3, 9],
    [7, 5, 3, 16],
  ];
  it.each(cases)('%ix%i with %i channels to %i matches the plain reference byte for byte', (w, h, c, size) => {
    let seed = w * 31 + h * 17 + c;
    const data = new Uint8Array(w * h * c).map(() => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24) & 255);
    const win = resizeWindow(w, h, size);
    const full = pillowReference(data, w, h, c, win.outWidth, win.outHeight);
    const want = new Uint8Array(size * size * c);
    for (let y = 0; y < size; y++) want.set(full.subarray(((y + win.y0) * win.outWidth + win.x0) * c, ((y + win.y0) * win.outWidth + win.x0 + size) * c), y * size * c);
    const got = resizeBicubic({ data, width: w, height: h, channels: c }, win);
    expect([got.width, got.height, got.channels]).toEqual([size, size, c]);
    expect(Buffer.from(got.data).equals(Buffer.from(want))).toBe(true);
  });
});
