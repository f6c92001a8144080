/**
 * What a TIFF's first IFD (the page sharp decodes) says its samples are. Read here because sharp does not expose
 * the ExtraSamples tag: its `hasAlpha` is true for every 4-band RGB or 2-band grey TIFF, whether the last band is
 * declared alpha or is data such as near-infrared.
 */
export interface TiffSamples {
  /** PhotometricInterpretation: 0/1 grey, 2 RGB, 3 palette, 5 separated (CMYK)...; undefined when unreadable. */
  photometric: number | undefined;
  /**
   * ExtraSamples, one per sample past the colour ones (0 unspecified, 1 associated alpha, 2 unassociated alpha);
   * null when the tag is absent or the IFD cannot be read.
   */
  extraSamples: number[] | null;
}

const PHOTOMETRIC = 262;
const EXTRA_SAMPLES = 338;
/** No image that sharp is allowed to open has more bands (core/preprocess/index.ts MAX_BANDS). */
const MAX_VALUES = 64;
/** The TIFF spec types both tags SHORT. */
const SHORT = 3;

const UNREADABLE: TiffSamples = { photometric: undefined, extraSamples: null };

export function tiffSamples(bytes: Uint8Array): TiffSamples {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fits = (at: number, n: number) => at + n <= bytes.length;
  if (!fits(0, 8)) return UNREADABLE;
  const order = view.getUint16(0);
  if (order !== 0x4949 && order !== 0x4d4d) return UNREADABLE;
  const le = order === 0x4949;
  const version = view.getUint16(2, le);
  // BigTIFF (43) widens offsets and counts to 8 bytes.
  const big = version === 43;
  if ((!big && version !== 42) || (big && !fits(8, 8))) return UNREADABLE;
  const offsetAt = (at: number): number => (big ? Number(view.getBigUint64(at, le)) : view.getUint32(at, le));

  const ifd = offsetAt(big ? 8 : 4);
  const countSize = big ? 8 : 2;
  const entrySize = big ? 20 : 12;
  if (!fits(ifd, countSize)) return UNREADABLE;
  const entries = big ? offsetAt(ifd) : view.getUint16(ifd, le);
  if (!fits(ifd + countSize, entries * entrySize)) return UNREADABLE;
  let photometric: number | undefined;
  let extraSamples: number[] | null = null;
  for (let i = 0; i < entries; i++) {
    const e = ifd + countSize + i * entrySize;
    const tag = view.getUint16(e, le);
    if (tag !== PHOTOMETRIC && tag !== EXTRA_SAMPLES) continue;
    const count = big ? offsetAt(e + 4) : view.getUint32(e + 4, le);
    if (view.getUint16(e + 2, le) !== SHORT || count < 1 || count > MAX_VALUES) return UNREADABLE;
    const valueAt = e + (big ? 12 : 8);
    const at = 2 * count <= (big ? 8 : 4) ? valueAt : offsetAt(valueAt);
    if (!fits(at, 2 * count)) return UNREADABLE;
    const values = Array.from({ length: count }, (_, k) => view.getUint16(at + 2 * k, le));
    if (tag === PHOTOMETRIC) photometric = values[0];
    else extraSamples = values;
  }
  return { photometric, extraSamples };
}

/**
 * Whether a TIFF of `samples` bands has samples past its grey or RGB ones but no ExtraSamples tag, which the
 * TIFF spec requires: libtiff then warns, and reads them as unspecified.
 */
export function extraSamplesUntagged(t: TiffSamples, samples: number): boolean {
  const colour = t.photometric === 0 || t.photometric === 1 ? 1 : t.photometric === 2 ? 3 : undefined;
  return t.extraSamples === null && colour !== undefined && samples > colour;
}
