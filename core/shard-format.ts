import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { z } from 'zod';
import { issueLine } from './schema-issue.ts';

/**
 * The `.rsshard` file: one shard of preprocessed training data. Layout (all integers little-endian), documented
 * in docs/SHARD_FORMAT.md:
 *
 *   0   8 B   magic "RSSHARD\0"
 *   8   u32   format version (SHARD_VERSION)
 *   12  u32   header length H (bytes of UTF-8 JSON, padded with spaces so sections start 64-aligned)
 *   16  H B   header JSON (ShardHeader)
 *   ... sections at the offsets the header names, each 64-byte aligned, zero padding between them
 *   end 32 B  SHA-256 of every byte before it
 */
export const SHARD_MAGIC = 'RSSHARD\0';
export const SHARD_VERSION = 1;
export const CONTEXT_LENGTH = 77;
const PREFIX_BYTES = 16;
const CHECKSUM_BYTES = 32;
const ALIGN = 64;
/** Bounds a hostile header cannot push past before any allocation. */
const MAX_HEADER_BYTES = 256 * 1024 * 1024;
const MAX_IMAGE_SIZE = 4096;

// Int32 sections are native-endian views of little-endian bytes.
if (endianness() !== 'LE') throw new Error('core/shard-format.ts supports little-endian hosts only');

export type Split = 'train' | 'val' | 'test';
export const SPLITS: readonly Split[] = ['train', 'val', 'test'];

export interface Shard {
  imageSize: number;
  /** Unique images, uint8 HWC, [nImages, S, S, 3]. */
  pixels: Uint8Array;
  /** Filename (relative to the dataset prefix) per image. */
  imageIds: string[];
  splits: Split[];
  labels: (string | null)[];
  /** One entry per caption row. */
  captions: string[];
  /** Per caption row: index into the images. */
  captionImage: Int32Array;
  /** Per caption row: its line number in captions.csv. */
  lines: Int32Array;
  /** [nCaptions, 77] token ids. */
  tokens: Int32Array;
}

const SECTION_NAMES = ['pixels', 'captionImage', 'lines', 'tokens'] as const;
type SectionName = (typeof SECTION_NAMES)[number];

const SectionSchema = z.object({ offset: z.number().int().nonnegative(), length: z.number().int().nonnegative() }).strict();

const HeaderSchema = z
  .object({
    imageSize: z.number().int().min(1).max(MAX_IMAGE_SIZE),
    nImages: z.number().int().nonnegative(),
    nCaptions: z.number().int().nonnegative(),
    contextLength: z.literal(CONTEXT_LENGTH),
    imageIds: z.array(z.string()),
    splits: z.array(z.enum(['train', 'val', 'test'])),
    labels: z.array(z.string().nullable()),
    captions: z.array(z.string()),
    sections: z.object({
      pixels: SectionSchema,
      captionImage: SectionSchema,
      lines: SectionSchema,
      tokens: SectionSchema,
    }).strict(),
  })
  .strict();
type ShardHeader = z.infer<typeof HeaderSchema>;

const align = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

function sectionLengths(imageSize: number, nImages: number, nCaptions: number): Record<SectionName, number> {
  return {
    pixels: nImages * imageSize * imageSize * 3,
    captionImage: nCaptions * 4,
    lines: nCaptions * 4,
    tokens: nCaptions * CONTEXT_LENGTH * 4,
  };
}

function checkConsistent(s: Omit<Shard, 'pixels' | 'captionImage' | 'lines' | 'tokens'> & Record<SectionName, { length: number }>, nImages: number, nCaptions: number, where: string): void {
  const fail = (why: string): never => {
    throw new Error(`${where}: ${why}`);
  };
  if (s.imageIds.length !== nImages || s.splits.length !== nImages || s.labels.length !== nImages) {
    fail(`imageIds/splits/labels must each have ${nImages} entries (got ${s.imageIds.length}/${s.splits.length}/${s.labels.length})`);
  }
  if (s.captions.length !== nCaptions) fail(`captions must have ${nCaptions} entries (got ${s.captions.length})`);
  const want = sectionLengths(s.imageSize, nImages, nCaptions);
  for (const name of SECTION_NAMES) {
    if (s[name].length !== want[name]) fail(`section ${name} holds ${s[name].length} bytes, expected ${want[name]}`);
  }
}

/** What a shard's header holds: everything but its arrays, known from the CSV rows before any image is decoded. */
export type ShardMeta = Pick<Shard, 'imageSize' | 'imageIds' | 'splits' | 'labels' | 'captions'>;

/**
 * A shard laid out in its final bytes before its arrays are filled, so a writer can decode images straight
 * into `pixels` instead of building the arrays and copying them. Fill every section view, then seal().
 */
export interface ShardDraft {
  pixels: Uint8Array;
  captionImage: Int32Array;
  lines: Int32Array;
  tokens: Int32Array;
  /** Checks the filled arrays and writes the checksum. */
  seal(): SealedShard;
}

export interface SealedShard {
  /** The whole file (a view of the draft's buffer). */
  bytes: Uint8Array;
  /** SHA-256 of the whole file, hex. */
  sha256: string;
}

/**
 * Lays out a shard for `meta` with `nCaptions` captions, in a buffer from `allocate` (all zero, `size` bytes, e.g.
 * a BufferPool's take) or a fresh one.
 */
export function draftShard(meta: ShardMeta, nCaptions: number, allocate?: (size: number) => Uint8Array): ShardDraft {
  const { header, headerRegion, sections, size } = planLayout(meta, nCaptions);
  const out = allocate ? allocate(size) : new Uint8Array(size);
  if (out.length !== size) throw new Error(`draftShard: buffer holds ${out.length} bytes, need ${size}`);
  out.set(Buffer.from(SHARD_MAGIC, 'latin1'), 0);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(8, SHARD_VERSION, true);
  view.setUint32(12, headerRegion, true);
  out.fill(0x20, PREFIX_BYTES, PREFIX_BYTES + headerRegion);
  out.set(header, PREFIX_BYTES);
  const bytes = (name: SectionName): Uint8Array => out.subarray(sections[name].offset, sections[name].offset + sections[name].length);
  const ints = (name: SectionName): Int32Array => new Int32Array(out.buffer, out.byteOffset + sections[name].offset, sections[name].length / 4);
  const draft: ShardDraft = {
    pixels: bytes('pixels'),
    captionImage: ints('captionImage'),
    lines: ints('lines'),
    tokens: ints('tokens'),
    seal() {
      const nImages = meta.imageIds.length;
      for (let i = 0; i < nCaptions; i++) {
        const img = draft.captionImage[i]!;
        if (img < 0 || img >= nImages) throw new Error(`encodeShard: caption ${i} points at image ${img}, have ${nImages}`);
      }
      const body = size - CHECKSUM_BYTES;
      // The file's own hash continues the trailer's, so the shard is read once for both.
      const hash = createHash('sha256').update(out.subarray(0, body));
      const trailer = hash.copy().digest();
      out.set(trailer, body);
      return { bytes: out, sha256: hash.update(trailer).digest('hex') };
    },
  };
  return draft;
}

function planLayout(meta: ShardMeta, nCaptions: number) {
  if (!Number.isInteger(meta.imageSize) || meta.imageSize < 1 || meta.imageSize > MAX_IMAGE_SIZE) {
    throw new Error(`encodeShard: imageSize ${meta.imageSize} out of range 1..${MAX_IMAGE_SIZE}`);
  }
  const nImages = meta.imageIds.length;
  const lengths = sectionLengths(meta.imageSize, nImages, nCaptions);
  checkConsistent({ ...meta, ...mapSections((n) => ({ length: lengths[n] })) }, nImages, nCaptions, 'encodeShard');
  const fields: Omit<ShardHeader, 'sections'> = {
    imageSize: meta.imageSize,
    nImages,
    nCaptions,
    contextLength: CONTEXT_LENGTH,
    imageIds: meta.imageIds,
    splits: meta.splits,
    labels: meta.labels,
    captions: meta.captions,
  };
  // Offsets live in the header, so size the header region with the widest offsets first; the real
  // numbers are never longer, and the rest of the region is padded with spaces.
  const widest = JSON.stringify({ ...fields, sections: mapSections(() => ({ offset: Number.MAX_SAFE_INTEGER, length: Number.MAX_SAFE_INTEGER })) });
  const headerRegion = align(PREFIX_BYTES + Buffer.byteLength(widest)) - PREFIX_BYTES;
  const sections = layout(PREFIX_BYTES + headerRegion, lengths);
  const header = Buffer.from(JSON.stringify({ ...fields, sections } satisfies ShardHeader), 'utf8');
  const last = sections.tokens;
  return { header, headerRegion, sections, size: align(last.offset + last.length) + CHECKSUM_BYTES };
}

export function encodeShard(s: Shard): Uint8Array {
  checkConsistent({ ...s, ...mapSections((n) => ({ length: s[n].byteLength })) }, s.imageIds.length, s.captions.length, 'encodeShard');
  const draft = draftShard(s, s.captions.length);
  draft.pixels.set(s.pixels);
  draft.captionImage.set(s.captionImage);
  draft.lines.set(s.lines);
  draft.tokens.set(s.tokens);
  return draft.seal().bytes;
}

function mapSections<T>(f: (name: SectionName) => T): Record<SectionName, T> {
  return Object.fromEntries(SECTION_NAMES.map((n) => [n, f(n)])) as Record<SectionName, T>;
}

function layout(start: number, lengths: Record<SectionName, number>): Record<SectionName, { offset: number; length: number }> {
  let at = start;
  const out = {} as Record<SectionName, { offset: number; length: number }>;
  for (const name of SECTION_NAMES) {
    out[name] = { offset: at, length: lengths[name] };
    at = align(at + lengths[name]);
  }
  return out;
}

/** Section bytes as an Int32Array; copies only when the view would be misaligned. */
function int32At(bytes: Uint8Array, offset: number, length: number): Int32Array {
  const start = bytes.byteOffset + offset;
  if (start % 4 === 0) return new Int32Array(bytes.buffer, start, length / 4);
  return new Int32Array(bytes.slice(offset, offset + length).buffer);
}

/** Parses and fully verifies a shard; every error names `source`. */
export function decodeShard(bytes: Uint8Array, source = '<shard>'): Shard {
  const fail = (why: string): never => {
    throw new Error(`${source}: not a valid shard: ${why}`);
  };
  if (bytes.length < PREFIX_BYTES + CHECKSUM_BYTES) fail(`${bytes.length} bytes is too short`);
  if (Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== SHARD_MAGIC) fail('bad magic (expected "RSSHARD")');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== SHARD_VERSION) fail(`unsupported version ${version} (this reader knows ${SHARD_VERSION})`);
  const headerLen = view.getUint32(12, true);
  const body = bytes.length - CHECKSUM_BYTES;
  if (headerLen > MAX_HEADER_BYTES || PREFIX_BYTES + headerLen > body) fail(`header length ${headerLen} exceeds the file`);
  const digest = createHash('sha256').update(bytes.subarray(0, body)).digest();
  if (!digest.equals(bytes.subarray(body))) fail('SHA-256 checksum mismatch (truncated or corrupted)');

  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLen)).toString('utf8'));
  } catch (e) {
    fail(`header is not JSON (${(e as Error).message})`);
  }
  const parsed = HeaderSchema.safeParse(json);
  if (!parsed.success) {
    fail(`header field ${issueLine(parsed.error)}`);
  }
  const h = parsed.data!;
  const dataStart = PREFIX_BYTES + headerLen;
  for (const name of SECTION_NAMES) {
    const { offset, length } = h.sections[name];
    if (offset % ALIGN !== 0) fail(`section ${name} offset ${offset} is not ${ALIGN}-byte aligned`);
    if (offset < dataStart || offset + length > body) fail(`section ${name} [${offset}, +${length}) lies outside the data area`);
  }
  checkConsistent({ ...h, ...h.sections }, h.nImages, h.nCaptions, `${source}: not a valid shard`);
  const sec = h.sections;
  const captionImage = int32At(bytes, sec.captionImage.offset, sec.captionImage.length);
  for (let i = 0; i < h.nCaptions; i++) {
    const img = captionImage[i]!;
    if (img < 0 || img >= h.nImages) fail(`caption ${i} points at image ${img}, have ${h.nImages}`);
  }
  return {
    imageSize: h.imageSize,
    pixels: bytes.subarray(sec.pixels.offset, sec.pixels.offset + sec.pixels.length),
    imageIds: h.imageIds,
    splits: h.splits,
    labels: h.labels,
    captions: h.captions,
    captionImage,
    lines: int32At(bytes, sec.lines.offset, sec.lines.length),
    tokens: int32At(bytes, sec.tokens.offset, sec.tokens.length),
  };
}
