import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type Koffi from 'koffi';
import { jpegOrientation } from './jpeg-orientation.ts';
import type { Raster } from './pillow-resample.ts';

/**
 * The fast path for plain JPEGs: libjpeg-turbo's TurboJPEG 3 API called through koffi (FFI), decoding into a
 * buffer this module keeps. A JPEG is most of what users upload, and libvips spends about 2 ms of pipeline set-up
 * and worker-thread hand-offs per image on top of the decode (a 600x600 JPEG: 2.5 ms through sharp, 0.6 ms here;
 * `rsclip bench-shard`). The output is byte-identical to sharp's and Pillow's: the same libjpeg-turbo decoder with
 * the accurate integer IDCT and fancy upsampling (TurboJPEG's defaults, and Pillow's).
 *
 * The library is the official libjpeg-turbo 3.1 build that @julusian/jpeg-turbo ships; that package's own binding
 * hard-codes TJFLAG_FASTDCT (a different IDCT, so not Pillow's pixels), hence the direct calls.
 *
 * Anything unusual returns undefined and the caller decodes with sharp instead: an EXIF orientation (sharp
 * rotates), CMYK/YCCK, 12-bit or lossless JPEGs, any libjpeg warning (truncated or corrupt data: sharp reports
 * the error), more pixels than the limit, or a platform where the library does not load.
 */

// turbojpeg.h (libjpeg-turbo 3.x): enum TJINIT, TJPARAM, TJCS, TJPF.
const TJINIT_DECOMPRESS = 1;
const TJPARAM_STOPONWARNING = 0;
const TJPARAM_JPEGWIDTH = 5;
const TJPARAM_JPEGHEIGHT = 6;
const TJPARAM_PRECISION = 7;
const TJPARAM_COLORSPACE = 8;
const TJPARAM_LOSSLESS = 15;
const TJPARAM_MAXPIXELS = 24;
const TJCS_RGB = 0;
const TJCS_YCBCR = 1;
const TJCS_GRAY = 2;
const TJPF_RGB = 0;
const TJPF_GRAY = 6;

interface TurboJpeg {
  handle: unknown;
  decompressHeader(handle: unknown, jpeg: Uint8Array, size: number): number;
  get(handle: unknown, param: number): number;
  set(handle: unknown, param: number, value: number): number;
  decompress8(handle: unknown, jpeg: Uint8Array, size: number, dst: Uint8Array, pitch: number, pixelFormat: number): number;
}

let library: TurboJpeg | null | undefined;
/** Decoded pixels; reused by the next call, which is why decodeJpeg's result must be consumed before awaiting. */
let scratch = new Uint8Array(0);
/** A scratch buffer above this is let go after use, so one huge image does not pin its memory. */
const KEEP_SCRATCH_BYTES = 4096 * 4096 * 3;

function turboJpeg(): TurboJpeg | null {
  if (library !== undefined) return library;
  try {
    const require = createRequire(import.meta.url);
    // Required here, not imported, so that a platform without koffi's binary falls back to sharp instead of failing.
    const koffi = require('koffi') as typeof Koffi;
    const pkg = dirname(require.resolve('@julusian/jpeg-turbo/package.json'));
    const lib = koffi.load(join(pkg, 'prebuilds', `jpeg-turbo-${process.platform}-${process.arch}`, 'libturbojpeg.so.0'));
    const init = lib.func('void *tj3Init(int initType)');
    const handle: unknown = init(TJINIT_DECOMPRESS);
    if (!handle) throw new Error('tj3Init failed');
    library = {
      handle,
      decompressHeader: lib.func('int tj3DecompressHeader(void *handle, const uint8_t *jpegBuf, size_t jpegSize)'),
      get: lib.func('int tj3Get(void *handle, int param)'),
      set: lib.func('int tj3Set(void *handle, int param, int value)'),
      decompress8: lib.func('int tj3Decompress8(void *handle, const uint8_t *jpegBuf, size_t jpegSize, uint8_t *dstBuf, int pitch, int pixelFormat)'),
    };
    library.set(handle, TJPARAM_STOPONWARNING, 1);
  } catch {
    library = null;
  }
  return library;
}

/** Whether the fast path is available on this platform (tests assert it is where the product runs). */
export function jpegTurboAvailable(): boolean {
  return turboJpeg() !== null;
}

/**
 * Decodes a plain 8-bit grey or colour JPEG to 1 or 3 channels, or returns undefined (see the module comment).
 * The raster's pixels live in a buffer the next call overwrites.
 */
export function decodeJpeg(bytes: Uint8Array, maxPixels: number): Raster | undefined {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  const tj = turboJpeg();
  if (!tj) return undefined;
  const orientation = jpegOrientation(bytes);
  if (orientation !== undefined && orientation !== 1) return undefined;
  const h = tj.handle;
  if (tj.decompressHeader(h, bytes, bytes.length) !== 0) return undefined;
  const width = tj.get(h, TJPARAM_JPEGWIDTH);
  const height = tj.get(h, TJPARAM_JPEGHEIGHT);
  const space = tj.get(h, TJPARAM_COLORSPACE);
  if (tj.get(h, TJPARAM_PRECISION) !== 8 || tj.get(h, TJPARAM_LOSSLESS) !== 0) return undefined;
  if (space !== TJCS_RGB && space !== TJCS_YCBCR && space !== TJCS_GRAY) return undefined;
  if (!(width > 0 && height > 0) || width * height > maxPixels) return undefined;
  tj.set(h, TJPARAM_MAXPIXELS, maxPixels);
  const channels = space === TJCS_GRAY ? 1 : 3;
  const n = width * height * channels;
  if (scratch.length < n) scratch = new Uint8Array(n);
  const data = scratch.subarray(0, n);
  if (n > KEEP_SCRATCH_BYTES) scratch = new Uint8Array(0);
  if (tj.decompress8(h, bytes, bytes.length, data, width * channels, channels === 1 ? TJPF_GRAY : TJPF_RGB) !== 0) return undefined;
  return { data, width, height, channels };
}
