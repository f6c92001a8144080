import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { z } from 'zod';

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

function bytesOf(a: Uint8Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function encodeShard(s: Shard): Uint8Array {
  if (!Number.isInteger(s.imageSize) || s.imageSize < 1 || s.imageSize > MAX_IMAGE_SIZE) {
    throw new Error(`encodeShard: imageSize ${s.imageSize} out of range 1..${MAX_IMAGE_SIZE}`);
  }
  const nImages = s.imageIds.length;
  const nCaptions = s.captions.length;
  const data: Record<SectionName, Uint8Array> = {
    pixels: s.pixels,
    captionImage: bytesOf(s.captionImage),
    lines: bytesOf(s.lines),
    tokens: bytesOf(s.tokens),
  };
  checkConsistent({ ...s, ...data }, nImages, nCaptions, 'encodeShard');
  for (let i = 0; i < nCaptions; i++) {
    const img = s.captionImage[i]!;
    if (img < 0 || img >= nImages) throw new Error(`encodeShard: caption ${i} points at image ${img}, have ${nImages}`);
  }

  const meta: Omit<ShardHeader, 'sections'> = {
    imageSize: s.imageSize,
    nImages,
    nCaptions,
    contextLength: CONTEXT_LENGTH,
    imageIds: s.imageIds,
    splits: s.splits,
    labels: s.labels,
    captions: s.captions,
  };
  // Offsets live in the header, so size the header region with the widest offsets first; the real
  // numbers are never longer, and the rest of the region is padded with spaces.
  const widest = JSON.stringify({ ...meta, sections: everySection(Number.MAX_SAFE_INTEGER) });
  const headerRegion = align(PREFIX_BYTES + Buffer.byteLength(widest)) - PREFIX_BYTES;
  const sections = layout(PREFIX_BYTES + headerRegion, data);
  const header = Buffer.from(JSON.stringify({ ...meta, sections } satisfies ShardHeader), 'utf8');
  const last = sections.tokens;
  const body = align(last.offset + last.length);
  const out = new Uint8Array(body + CHECKSUM_BYTES);
  out.set(Buffer.from(SHARD_MAGIC, 'latin1'), 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, SHARD_VERSION, true);
  view.setUint32(12, headerRegion, true);
  out.fill(0x20, PREFIX_BYTES, PREFIX_BYTES + headerRegion);
  out.set(header, PREFIX_BYTES);
  for (const name of SECTION_NAMES) out.set(data[name], sections[name].offset);
  out.set(createHash('sha256').update(out.subarray(0, body)).digest(), body);
  return out;
}

function everySection(n: number): Record<SectionName, { offset: number; length: number }> {
  const widest = { offset: n, length: n };
  return { pixels: widest, captionImage: widest, lines: widest, tokens: widest };
}

function layout(start: number, data: Record<SectionName, Uint8Array>): Record<SectionName, { offset: number; length: number }> {
  let at = start;
  const out = {} as Record<SectionName, { offset: number; length: number }>;
  for (const name of SECTION_NAMES) {
    out[name] = { offset: at, length: data[name].length };
    at = align(at + data[name].length);
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
    const issue = parsed.error.issues[0]!;
    fail(`header field ${issue.path.join('.') || '(root)'}: ${issue.message}`);
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
