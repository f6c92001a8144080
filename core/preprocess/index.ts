import sharp, { type Metadata } from 'sharp';
import { gifTransparentColour } from './gif.ts';
import { decodeJpeg } from './jpeg-turbo.ts';
import { crop, resizeBicubic, resizeNearest, type Raster, type Window } from './pillow-resample.ts';
import { extraSamplesUntagged, tiffSamples, type TiffSamples } from './tiff-samples.ts';

/**
 * One image -> the uint8 HWC [S,S,3] that open_clip's eval transform feeds to ToTensor:
 * torchvision Resize(S) (shorter side to S, bicubic) + CenterCrop(S) + convert("RGB"), with Pillow 9.4's
 * arithmetic (core/preprocess/pillow-resample.ts). Plain JPEGs are decoded by libjpeg-turbo directly
 * (core/preprocess/jpeg-turbo.ts), everything else by sharp (libvips), with EXIF auto-orientation,
 * embedded ICC profiles ignored (Pillow ignores them too) and a pixel limit against decompression bombs.
 *
 * 8-bit JPEG, PNG, WebP and GIF images follow Pillow exactly: grey is resized as one channel and copied, alpha is
 * premultiplied for the resize and then dropped (Image.resize on "RGBA"/"LA" + convert("RGB")), CMYK is resized as
 * four plain channels and converted with Pillow's formula (no colour profile), palette and 1-bit images use
 * NEAREST; these formats declare their layout, so `bands` does not apply to them.
 *
 * TIFFs (other than palette, 1-bit and CMYK, which are read as above) and 16-bit images of any format are read by
 * band index: `bands` picks R, G and B (default 0,1,2; a 1-band image uses its band three times), and 16-bit
 * values are stretched from the 2nd..98th percentile of those bands together onto 0..255. Nothing is taken for
 * alpha unless the file says so, since a 4th band is as often near-infrared (NAIP's RGB+NIR) as transparency:
 * without `bands`, a 2- or 4-band TIFF whose last band is not declared alpha (ExtraSamples) is refused as
 * ambiguous, and one that declares it is grey+alpha or RGBA (8-bit: as Pillow reads it; 16-bit: its colour
 * bands).
 */
export interface PreprocessOptions {
  /** Output side S. */
  size: number;
  /** Zero-based band indices (R,G,B) for TIFFs and 16-bit images. */
  bands?: number[];
  maxPixels?: number;
  /** Names the image in errors (file name, S3 key, CSV line). */
  source?: string;
}

/** 8192 x 8192: a large aerial tile, and 256 MB decoded as RGBA. */
export const DEFAULT_MAX_PIXELS = 8192 * 8192;
/** Sentinel-2 has 13 bands; hyperspectral cubes are out of scope. */
const MAX_BANDS = 64;
/** Bounds an image read by band index (pixels x bands x 2 bytes, the most its decode holds). */
const MAX_DECODED_BYTES = 1024 * 1024 * 1024;
export const SUPPORTED_FORMATS = ['jpeg', 'png', 'webp', 'tiff', 'gif'] as const;
const STRETCH_LOW = 0.02;
const STRETCH_HIGH = 0.98;

/** A bad image: `reason` says what is wrong in plain words, the message adds the source. */
export class ImageError extends Error {
  constructor(
    readonly source: string,
    readonly reason: string,
  ) {
    super(`${source}: ${reason}`);
    this.name = 'ImageError';
  }
}

export interface ImageProbe {
  format: string;
  /** After EXIF orientation. */
  width: number;
  height: number;
  channels: number;
  depth: string;
  /** libvips interpretation (b-w, grey16, srgb, rgb16, cmyk...). */
  space: string;
  /** The bands read as R, G, B; absent where the image is read as Pillow reads its format's layout. */
  bands?: number[];
  /** Palette or 1-bit: Pillow resizes these with NEAREST. */
  nearest: boolean;
  /**
   * Decode with libtiff's warnings not fatal: it warns about a TIFF with extra samples but no ExtraSamples tag,
   * which sharp's default failOn would refuse though the bands read fine; read errors still fail.
   */
  lenient: boolean;
}

function firstLine(e: unknown): string {
  return String((e as Error).message ?? e).split('\n')[0]!.trim();
}

/**
 * Reads only the header (works on the first bytes of a file for most formats) and checks format, pixel count,
 * sample depth and band choice. Throws ImageError naming `source`.
 */
export async function probeImage(bytes: Uint8Array, opts: Omit<PreprocessOptions, 'size'>): Promise<ImageProbe> {
  const source = opts.source ?? '<image>';
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false, limitInputChannels: MAX_BANDS }).metadata();
  } catch (e) {
    throw new ImageError(source, `not a readable image (${firstLine(e)})`);
  }
  if (!(SUPPORTED_FORMATS as readonly string[]).includes(meta.format)) {
    throw new ImageError(source, `unsupported image format '${meta.format}' (supported: ${SUPPORTED_FORMATS.join(', ')})`);
  }
  const { width, height } = meta.autoOrient ?? meta;
  if (!(width > 0 && height > 0)) throw new ImageError(source, `image has no pixels`);
  const pixels = width * height;
  if (pixels > maxPixels) {
    throw new ImageError(source, `image is ${width} x ${height} = ${pixels} pixels, over the limit of ${maxPixels}`);
  }
  if (meta.depth !== 'uchar' && meta.depth !== 'ushort') {
    throw new ImageError(source, `unsupported sample format '${meta.depth}' (8- or 16-bit integers only)`);
  }
  const nearest = meta.isPalette || meta.bitsPerSample === 1;
  const tiff = meta.format === 'tiff' && !nearest && meta.space !== 'cmyk' ? tiffSamples(bytes) : undefined;
  const bands = bandsToRead(meta, tiff, opts.bands, source);
  if (bands && pixels * meta.channels * 2 > MAX_DECODED_BYTES) {
    throw new ImageError(source, `${width} x ${height} x ${meta.channels} bands is too large to decode`);
  }
  const lenient = !!tiff && extraSamplesUntagged(tiff, meta.channels);
  return { format: meta.format, width, height, channels: meta.channels, depth: meta.depth, space: meta.space, bands, nearest, lenient };
}

/**
 * The bands to read as R, G, B, or undefined for the layouts read as Pillow reads them. `tiff` is set for the
 * TIFFs read by band index.
 */
function bandsToRead(meta: Metadata, tiff: TiffSamples | undefined, requested: number[] | undefined, source: string): number[] | undefined {
  const { channels } = meta;
  const sixteen = meta.depth === 'ushort';
  if (!tiff && !sixteen) return undefined;
  if (requested) return checkBands(requested, channels, source);
  if (tiff && (channels === 2 || channels === 4)) {
    const extra = tiff.extraSamples;
    const alpha = extra?.length === 1 && (extra[0] === 1 || extra[0] === 2);
    if (!alpha) throw new ImageError(source, ambiguousBands(channels, extra));
    if (!sixteen) return undefined;
  }
  // 8-bit grey and RGB read by index 0,0,0 and 0,1,2 give Pillow's result without copying the bands out.
  if (!sixteen && (channels === 1 || (channels === 3 && meta.space === 'srgb'))) return undefined;
  return channels >= 3 ? [0, 1, 2] : [0, 0, 0];
}

function ambiguousBands(channels: number, extraSamples: number[] | null): string {
  const tag = extraSamples === null ? 'no readable ExtraSamples tag' : `ExtraSamples [${extraSamples.join(',')}]${extraSamples.every((v) => v === 0) ? ', unspecified' : ''}`;
  const example = channels === 4 ? '[0,1,2] for the RGB of RGB+NIR, [3,0,1] for NIR false colour' : '[0,0,0] for band 0 as grey';
  return (
    `${channels}-band TIFF whose last band (band ${channels - 1}) is not declared as alpha (${tag}), so it may be data such as near-infrared ` +
    `rather than transparency: set "bands" in train.json to the three zero-based bands to use as R, G, B, e.g. ${example}`
  );
}

function checkBands(bands: number[], channels: number, source: string): number[] {
  for (const b of bands) {
    if (b >= channels) throw new ImageError(source, `band ${b} requested but the image has ${channels} band(s)`);
  }
  return bands;
}

/** torchvision Resize(S) + CenterCrop(S) geometry for a w x h image. */
export function resizeWindow(width: number, height: number, size: number): Window {
  const [short, long] = width <= height ? [width, height] : [height, width];
  // Python int() truncates S*long/short, computed in doubles as here.
  const newLong = Math.trunc((size * long) / short);
  const [outWidth, outHeight] = short === size ? [width, height] : width <= height ? [size, newLong] : [newLong, size];
  return {
    outWidth,
    outHeight,
    x0: roundHalfEven((outWidth - size) / 2),
    y0: roundHalfEven((outHeight - size) / 2),
    width: size,
    height: size,
  };
}

/**
 * resizeWindow, refused when the resized image (before the crop, which is what the resampler holds) is over the
 * pixel limit: a thin image under the limit, 2000000 x 1, would be resized to 448000000 x 224.
 */
export function resizedWindow(width: number, height: number, opts: PreprocessOptions): Window {
  const win = resizeWindow(width, height, opts.size);
  const limit = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (win.outWidth * win.outHeight > limit) {
    throw new ImageError(
      opts.source ?? '<image>',
      `image is ${width} x ${height}: its short side resized to ${opts.size} makes it ${win.outWidth} x ${win.outHeight}, over the limit of ${limit} pixels`,
    );
  }
  return win;
}

/** Python's round(): ties to even. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Preprocesses one image; with `out` (S*S*3 bytes, e.g. its place in a shard) the result is written there. */
export async function preprocessImage(bytes: Uint8Array, opts: PreprocessOptions, out?: Uint8Array): Promise<Uint8Array> {
  const source = opts.source ?? '<image>';
  const jpeg = decodeJpeg(bytes, opts.maxPixels ?? DEFAULT_MAX_PIXELS);
  if (jpeg) return finish(jpeg, resizedWindow(jpeg.width, jpeg.height, opts), { nearest: false, cmyk: false }, out);
  const probe = await probeImage(bytes, opts);
  const win = resizedWindow(probe.width, probe.height, opts);
  const input = sharp(bytes, {
    limitInputPixels: opts.maxPixels ?? DEFAULT_MAX_PIXELS,
    limitInputChannels: MAX_BANDS,
    ignoreIcc: true,
    ...(probe.lenient ? { failOn: 'error' as const } : {}),
  }).autoOrient();
  try {
    if (probe.bands) {
      const sixteen = probe.depth === 'ushort';
      // Converting within the image's own family keeps every band; crossing families would add or drop some.
      // libvips' 8-bit grey conversion keeps only the first band, so 8-bit grey images are widened to 16 bits.
      const grey = probe.space === 'b-w' || probe.space === 'grey16';
      const wide = sixteen || grey;
      const { data, info } = await input
        .toColourspace(grey ? 'grey16' : wide ? 'rgb16' : 'srgb')
        .raw({ depth: wide ? 'ushort' : 'uchar' })
        .toBuffer({ resolveWithObject: true });
      // A view, not a copy, of the decoded bands: sharp's output buffer is its own allocation, so it is aligned.
      const samples = wide ? new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const rgb = threeBands(samples, info.channels, checkBands(probe.bands, info.channels, source), sixteen);
      return finish({ data: rgb, width: info.width, height: info.height, channels: 3 }, win, { nearest: false, cmyk: false }, out);
    }
    const cmyk = probe.space === 'cmyk';
    // libvips would convert CMYK to sRGB through a profile; Pillow keeps the samples as stored.
    const decoded = cmyk ? input.pipelineColourspace('cmyk').toColourspace('cmyk') : input;
    const { data, info } = await decoded.raw().toBuffer({ resolveWithObject: true });
    const raster: Raster = { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: info.channels };
    if (cmyk && raster.channels !== 4) throw new ImageError(source, `CMYK image decoded to ${raster.channels} channels`);
    if (probe.format === 'gif' && raster.channels === 4) paintTransparent(raster, gifTransparentColour(bytes));
    return finish(raster, win, { nearest: probe.nearest, cmyk }, out);
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(source, `cannot decode image (${firstLine(e)})`);
  }
}

/** Decoded 8-bit pixels -> the S x S RGB result. Plain RGB is resampled straight into `out`; the other layouts convert a smaller result afterwards. */
function finish(raster: Raster, win: Window, kind: { nearest: boolean; cmyk: boolean }, out: Uint8Array | undefined): Uint8Array {
  const alpha = !kind.cmyk && (raster.channels === 2 || raster.channels === 4);
  const resized = resample(raster, win, kind.nearest, alpha, raster.channels === 3 ? out : undefined);
  const rgb = kind.cmyk ? cmykToRgb(resized) : toRgb(resized);
  if (!out || rgb === out) return rgb;
  out.set(rgb);
  return out;
}

function resample(src: Raster, win: Window, nearest: boolean, alpha: boolean, into: Uint8Array | undefined): Raster {
  if (win.outWidth === src.width && win.outHeight === src.height) return crop(src, win.x0, win.y0, win.width, win.height, into);
  // Pillow converts palette images to RGB(A) after the resize, which drops transparency without premultiplying.
  if (nearest) return resizeNearest(src, win);
  if (!alpha) return resizeBicubic(src, win, into);
  return unpremultiply(resizeBicubic(premultiply(src), win));
}

/** Pillow RGBA -> RGBa (and LA -> La): MULDIV255 per colour channel. */
function premultiply(src: Raster): Raster {
  const c = src.channels;
  const out = src.data.slice();
  for (let p = 0; p < out.length; p += c) {
    const a = out[p + c - 1]!;
    for (let ch = 0; ch < c - 1; ch++) {
      const t = out[p + ch]! * a + 128;
      out[p + ch] = ((t >> 8) + t) >> 8;
    }
  }
  return { ...src, data: out };
}

/** Pillow RGBa -> RGBA: 255 * v / alpha (integer division), alpha 0 and 255 left alone. */
function unpremultiply(src: Raster): Raster {
  const c = src.channels;
  const out = src.data;
  for (let p = 0; p < out.length; p += c) {
    const a = out[p + c - 1]!;
    if (a === 0 || a === 255) continue;
    for (let ch = 0; ch < c - 1; ch++) out[p + ch] = Math.min(255, Math.trunc((255 * out[p + ch]!) / a));
  }
  return src;
}

/** Gives fully transparent pixels `colour` (what Pillow shows there for a GIF; see gifTransparentColour). */
function paintTransparent(src: Raster, colour: [number, number, number] | undefined): void {
  if (!colour) return;
  for (let p = 0; p < src.data.length; p += 4) if (src.data[p + 3] === 0) src.data.set(colour, p);
}

/** Pillow convert("RGB") from "CMYK" (Convert.c cmyk2rgb): nk = 255 - K, each of R, G, B = nk - C*nk/255. */
function cmykToRgb(src: Raster): Uint8Array {
  const n = src.width * src.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const nk = 255 - src.data[i * 4 + 3]!;
    for (let ch = 0; ch < 3; ch++) {
      const t = src.data[i * 4 + ch]! * nk + 128;
      out[i * 3 + ch] = nk - (((t >> 8) + t) >> 8);
    }
  }
  return out;
}

/** Drops alpha and copies a grey channel to R, G and B (Pillow convert("RGB")). */
function toRgb(src: Raster): Uint8Array {
  const c = src.channels;
  if (c === 3) return src.data;
  const n = src.width * src.height;
  const out = new Uint8Array(n * 3);
  const grey = c <= 2;
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < 3; ch++) out[i * 3 + ch] = src.data[i * c + (grey ? 0 : ch)]!;
  }
  return out;
}

/**
 * Three chosen bands as 8-bit. 8-bit sources keep their values (widened ones come through libvips as v * 257 and
 * go back exactly); 16-bit sources are stretched from their joint 2nd..98th percentile to 0..255.
 */
function threeBands(samples: Uint8Array | Uint16Array, channels: number, bands: number[], sixteenBit: boolean): Uint8Array {
  const n = samples.length / channels;
  const out = new Uint8Array(n * 3);
  if (!sixteenBit) {
    const unit = samples instanceof Uint16Array ? 257 : 1;
    for (let i = 0; i < n; i++) for (let k = 0; k < 3; k++) out[i * 3 + k] = samples[i * channels + bands[k]!]! / unit;
    return out;
  }
  const hist = new Uint32Array(65536);
  for (let i = 0; i < n; i++) for (let k = 0; k < 3; k++) hist[samples[i * channels + bands[k]!]!]!++;
  const total = n * 3;
  const lo = valueAtRank(hist, Math.round(STRETCH_LOW * (total - 1)));
  const hi = valueAtRank(hist, Math.round(STRETCH_HIGH * (total - 1)));
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) {
      const v = Math.round((samples[i * channels + bands[k]!]! - lo) * scale);
      out[i * 3 + k] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/** The value at 0-based `rank` of the sorted samples a histogram counts. */
function valueAtRank(hist: Uint32Array, rank: number): number {
  let seen = 0;
  for (let v = 0; v < hist.length; v++) {
    seen += hist[v]!;
    if (seen > rank) return v;
  }
  return hist.length - 1;
}
