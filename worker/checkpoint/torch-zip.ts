import { constants as zlib, inflateRawSync } from 'node:zlib';
import type { ByteSource } from '../../core/tensors/byte-source.ts';
import { CheckpointError } from '../../core/tensors/errors.ts';

/**
 * A bounded ZIP reader for torch checkpoints: central directory (ZIP64 when a field overflows), stored and
 * deflate entries, read by position so only the directory and the entries asked for are ever in memory. Every
 * offset and size is checked against the archive before it is used, and an entry's uncompressed size is checked
 * against a limit before anything is allocated or inflated.
 * CRC-32 is not checked: torch can write archives without it (`set_crc32_options`), and the run
 * records a SHA-256 of what it loaded.
 */

/**
 * Deflate cannot shrink anything by more than about 1032:1, and only constant filler comes near that; real
 * weights deflate by less than 2:1. An entry declaring more is a decompression bomb, refused before inflating.
 */
export const MAX_INFLATE_RATIO = 1000;
/**
 * A torch checkpoint's directory has one ~100-byte record per storage (a ViT-L-14 training checkpoint with its
 * optimizer state: ~1200); this bounds the records held in memory whatever the directory claims.
 */
export const MAX_DIRECTORY_BYTES = 16 * 1024 * 1024;

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  /** Offset of the entry's local header; the data follows the local header's own name and extra field. */
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_BYTES = 22;
const ZIP64_LOCATOR_BYTES = 20;
const ZIP64_EOCD_BYTES = 56;
const MAX_COMMENT = 0xffff;
const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;
const FLAG_ENCRYPTED = 1;

export class ZipArchive {
  /** Entry names in central-directory order. */
  readonly names: string[];
  private readonly entries: Map<string, ZipEntry>;
  /** Where entry data must end: the start of the central directory. */
  private readonly dataEnd: number;

  constructor(
    private readonly src: ByteSource,
    readonly source: string,
  ) {
    const dir = locateDirectory(src, source);
    this.entries = readCentralDirectory(src.read(dir.offset, dir.size), dir, source);
    this.dataEnd = dir.offset;
    this.names = [...this.entries.keys()];
  }

  get byteLength(): number {
    return this.src.size;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): ZipEntry | undefined {
    return this.entries.get(name);
  }

  /**
   * The entry's bytes in a buffer of their own at offset 0 (see ByteSource.read); refuses before allocating if it
   * is larger than maxBytes.
   */
  read(name: string, maxBytes: number): Uint8Array {
    const e = this.entries.get(name);
    if (!e) throw new CheckpointError(this.source, `entry ${name} is missing`);
    if (e.size > maxBytes) throw new CheckpointError(this.source, `entry ${name} is ${e.size} bytes, over the ${maxBytes}-byte limit`);
    const start = dataStart(this.src, e, this.dataEnd, this.source);
    if (e.method === METHOD_STORED) return this.src.read(start, e.size);
    return inflateBounded(this.src.read(start, e.compressedSize), e, this.source);
  }
}

/**
 * Inflates into one buffer of the declared size plus a byte, never grown: zlib stops with an error as soon as the
 * stream passes the declared size, however far the stream would go.
 */
function inflateBounded(raw: Uint8Array, e: ZipEntry, source: string): Uint8Array {
  let out: Buffer;
  try {
    out = inflateRawSync(raw, { chunkSize: Math.max(e.size + 1, zlib.Z_MIN_CHUNK), maxOutputLength: Math.max(e.size, 1) });
  } catch (err) {
    const why = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? 'inflating was stopped where it passed them' : (err as Error).message;
    throw new CheckpointError(source, `entry ${e.name} does not inflate to its declared ${e.size} bytes (${why})`);
  }
  if (out.length !== e.size) throw new CheckpointError(source, `entry ${e.name} inflates to ${out.length} bytes, declared ${e.size}`);
  // zlib's one output chunk is ours alone unless it was small enough to come from Node's shared buffer pool, whose
  // ArrayBuffer must not end up in a tensor (a transfer to a worker thread would detach the whole pool).
  return out.buffer.byteLength === out.length + 1 ? out : new Uint8Array(out);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The end-of-central-directory record's offset in the file, and a view of the file's tail that holds it. */
function findEocd(src: ByteSource, source: string): { eocd: number; tail: DataView; tailStart: number } {
  // The tail also covers the ZIP64 locator that sits just before a record with the longest comment.
  const tailStart = Math.max(0, src.size - EOCD_BYTES - MAX_COMMENT - ZIP64_LOCATOR_BYTES);
  const tail = view(src.read(tailStart, src.size - tailStart));
  const lowest = Math.max(0, src.size - EOCD_BYTES - MAX_COMMENT) - tailStart;
  for (let p = tail.byteLength - EOCD_BYTES; p >= lowest; p--) {
    if (tail.getUint32(p, true) === SIG_EOCD && p + EOCD_BYTES + tail.getUint16(p + 20, true) <= tail.byteLength) return { eocd: tailStart + p, tail, tailStart };
  }
  throw new CheckpointError(source, 'not a ZIP archive (no end-of-central-directory record; truncated or not a torch checkpoint)');
}

interface Directory {
  count: number;
  offset: number;
  size: number;
}

function u64(dv: DataView, at: number, what: string, source: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError(source, `${what} ${v} is out of range`);
  return Number(v);
}

function locateDirectory(src: ByteSource, source: string): Directory {
  const { eocd, tail, tailStart } = findEocd(src, source);
  const at = eocd - tailStart;
  if (tail.getUint16(at + 4, true) !== 0 || tail.getUint16(at + 6, true) !== 0) {
    throw new CheckpointError(source, 'multi-disk ZIP archives are not supported');
  }
  let dir: Directory = { count: tail.getUint16(at + 10, true), size: tail.getUint32(at + 12, true), offset: tail.getUint32(at + 16, true) };
  let dirEnd = eocd;
  const overflowed = dir.count === 0xffff || dir.size === 0xffffffff || dir.offset === 0xffffffff;
  const loc = at - ZIP64_LOCATOR_BYTES;
  if (overflowed || (loc >= 0 && tail.getUint32(loc, true) === SIG_ZIP64_LOCATOR)) {
    if (loc < 0 || tail.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) throw new CheckpointError(source, 'ZIP64 end-of-central-directory locator is missing');
    const rec = u64(tail, loc + 8, 'ZIP64 record offset', source);
    const record = rec + ZIP64_EOCD_BYTES <= tailStart + loc ? view(src.read(rec, ZIP64_EOCD_BYTES)) : undefined;
    if (!record || record.getUint32(0, true) !== SIG_ZIP64_EOCD) throw new CheckpointError(source, 'ZIP64 end-of-central-directory record is missing or corrupt');
    dir = {
      count: u64(record, 32, 'entry count', source),
      size: u64(record, 40, 'central directory size', source),
      offset: u64(record, 48, 'central directory offset', source),
    };
    dirEnd = rec;
  }
  if (dir.offset + dir.size > dirEnd) throw new CheckpointError(source, 'central directory lies outside the archive (truncated file?)');
  if (dir.size > MAX_DIRECTORY_BYTES) throw new CheckpointError(source, `central directory is ${dir.size} bytes, over the ${MAX_DIRECTORY_BYTES}-byte limit`);
  // Each central record is at least 46 bytes, which bounds the count before anything is allocated.
  if (dir.count * 46 > dir.size) throw new CheckpointError(source, `central directory of ${dir.size} bytes cannot hold ${dir.count} entries`);
  return dir;
}

/** Fills the fields a ZIP64 extra block overrides (only those stored as 0xffffffff, in this order). */
function applyZip64Extra(e: ZipEntry, extra: DataView, source: string): void {
  for (let p = 0; p + 4 <= extra.byteLength; ) {
    const id = extra.getUint16(p, true);
    const len = extra.getUint16(p + 2, true);
    if (p + 4 + len > extra.byteLength) throw new CheckpointError(source, `entry ${e.name} has a truncated extra field`);
    if (id === 0x0001) {
      let q = p + 4;
      const take = (what: string): number => {
        if (q + 8 > p + 4 + len) throw new CheckpointError(source, `entry ${e.name} has a short ZIP64 extra field`);
        const v = u64(extra, q, what, source);
        q += 8;
        return v;
      };
      if (e.size === 0xffffffff) e.size = take('size');
      if (e.compressedSize === 0xffffffff) e.compressedSize = take('compressed size');
      if (e.localHeaderOffset === 0xffffffff) e.localHeaderOffset = take('local header offset');
    }
    p += 4 + len;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses the directory's records (`bytes`, read from the file at dir.offset). */
function readCentralDirectory(bytes: Uint8Array, dir: Directory, source: string): Map<string, ZipEntry> {
  const dv = view(bytes);
  const end = bytes.length;
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < dir.count; i++) {
    if (p + 46 > end || dv.getUint32(p, true) !== SIG_CENTRAL) throw new CheckpointError(source, `central directory record ${i} is corrupt`);
    const flags = dv.getUint16(p + 8, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    if (p + 46 + nameLen + extraLen + commentLen > end) throw new CheckpointError(source, `central directory record ${i} runs past the directory`);
    let name: string;
    try {
      name = utf8.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    } catch {
      throw new CheckpointError(source, `central directory record ${i} has a name that is not UTF-8`);
    }
    const e: ZipEntry = {
      name,
      method: dv.getUint16(p + 10, true),
      compressedSize: dv.getUint32(p + 20, true),
      size: dv.getUint32(p + 24, true),
      localHeaderOffset: dv.getUint32(p + 42, true),
    };
    applyZip64Extra(e, new DataView(bytes.buffer, bytes.byteOffset + p + 46 + nameLen, extraLen), source);
    if (flags & FLAG_ENCRYPTED) throw new CheckpointError(source, `entry ${name} is encrypted`);
    if (e.method !== METHOD_STORED && e.method !== METHOD_DEFLATE) throw new CheckpointError(source, `entry ${name} uses compression method ${e.method} (only stored and deflate are supported)`);
    if (e.method === METHOD_STORED && e.compressedSize !== e.size) throw new CheckpointError(source, `stored entry ${name} has different compressed and uncompressed sizes`);
    if (e.method === METHOD_DEFLATE) checkDeflateSizes(e, source);
    if (e.localHeaderOffset + 30 + e.compressedSize > dir.offset) throw new CheckpointError(source, `entry ${name} lies outside the archive data`);
    if (entries.has(name)) throw new CheckpointError(source, `entry ${name} appears twice`);
    entries.set(name, e);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/**
 * Sizes a deflate stream can honestly have: not inflating more than MAX_INFLATE_RATIO, and not much larger than
 * its data (zlib's worst case adds a few bytes per 16 KiB), so the compressed bytes read stay proportional to
 * what the entry yields.
 */
function checkDeflateSizes(e: ZipEntry, source: string): void {
  if (e.size > MAX_INFLATE_RATIO * e.compressedSize) {
    const ratio = Math.round(e.size / Math.max(e.compressedSize, 1));
    throw new CheckpointError(source, `entry ${e.name} declares ${e.size} bytes from ${e.compressedSize} compressed (${ratio}:1), over the ${MAX_INFLATE_RATIO}:1 inflation bound`);
  }
  if (e.compressedSize > e.size + e.size / 8 + 1024) {
    throw new CheckpointError(source, `entry ${e.name} has ${e.compressedSize} compressed bytes for ${e.size} declared, more than any deflate stream needs`);
  }
}

/** Offset of the entry's data, from its local header (whose extra field may differ from the central one: torch pads it). */
function dataStart(src: ByteSource, e: ZipEntry, dataEnd: number, source: string): number {
  const p = e.localHeaderOffset;
  const dv = p + 30 <= dataEnd ? view(src.read(p, 30)) : undefined;
  if (!dv || dv.getUint32(0, true) !== SIG_LOCAL) throw new CheckpointError(source, `local header of entry ${e.name} is corrupt`);
  const start = p + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
  if (start + e.compressedSize > dataEnd) throw new CheckpointError(source, `entry ${e.name} runs into the central directory`);
  return start;
}

/** True when the bytes start like a ZIP archive (a local file header). */
export const looksLikeZip = (bytes: Uint8Array): boolean =>
  bytes.length >= 4 && view(bytes).getUint32(0, true) === SIG_LOCAL;
