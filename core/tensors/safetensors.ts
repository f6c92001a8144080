import { endianness } from 'node:os';
import { concatArrays, numel, type StateDict } from './tensor.ts';
import { asSource, type ByteSource } from './byte-source.ts';
import { CheckpointError } from './errors.ts';
import { f16ToF32, bf16ToF32 } from './half.ts';

/**
 * The safetensors format (https://github.com/huggingface/safetensors): u64 LE header length, JSON header, byte
 * buffer. Read by position: the header first, then each tensor's bytes at its offsets.
 */

export type SafetensorsData = Float32Array | Int32Array | BigInt64Array | Uint8Array;

export interface SafetensorsEntry {
  /** The dtype as stored; F16/BF16/F64 data is already upcast to float32. */
  dtype: string;
  shape: number[];
  data: SafetensorsData;
}

/** Same bound as the reference implementation: a larger header is refused before it is parsed. */
export const MAX_HEADER_BYTES = 100_000_000;

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1 };
const METADATA_KEY = '__metadata__';

if (endianness() !== 'LE') throw new Error('checkpoint I/O assumes a little-endian host');

/** `buf` is a source read's own buffer at offset 0, so typed arrays view it whatever the tensor's file offset. */
function decode(dtype: string, buf: ArrayBufferLike, byteLength: number): SafetensorsData {
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf, 0, byteLength / 4);
    case 'F64':
      return Float32Array.from(new Float64Array(buf, 0, byteLength / 8));
    case 'F16':
      return f16ToF32(new Uint16Array(buf, 0, byteLength / 2));
    case 'BF16':
      return bf16ToF32(new Uint16Array(buf, 0, byteLength / 2));
    case 'I64':
      return new BigInt64Array(buf, 0, byteLength / 8);
    case 'I32':
      return new Int32Array(buf, 0, byteLength / 4);
    default:
      return new Uint8Array(buf, 0, byteLength);
  }
}

interface HeaderEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

function parseHeader(src: ByteSource, source: string): { entries: HeaderEntry[]; dataStart: number } {
  function fail(reason: string): never {
    throw new CheckpointError(source, `not a valid safetensors file: ${reason}`);
  }
  if (src.size < 8) fail(`file is ${src.size} bytes, shorter than the 8-byte header length`);
  const headerLen = new DataView(src.read(0, 8).buffer).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const dataStart = 8 + Number(headerLen);
  if (dataStart > src.size) fail(`header length ${headerLen} runs past the end of the ${src.size}-byte file`);
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let header: unknown;
  try {
    const json = text.decode(src.read(8, dataStart - 8));
    if (!json.startsWith('{')) fail('header does not start with "{"');
    header = JSON.parse(json);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    fail(`header is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');

  const dataLen = src.size - dataStart;
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA_KEY) continue;
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) fail(`entry "${name}" is not an object`);
    const dtype = e.dtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) fail(`entry "${name}" has unsupported dtype ${JSON.stringify(dtype)}`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`entry "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`entry "${name}" has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (begin > end || end > dataLen) fail(`entry "${name}" data_offsets [${begin}, ${end}] outside the ${dataLen}-byte buffer`);
    // Compare in floating point step by step: a product of huge dims must not wrap into a plausible size.
    let expected = DTYPE_BYTES[dtype as string]!;
    for (const d of shape as number[]) expected *= d;
    if (expected !== end - begin) {
      fail(`entry "${name}" shape ${JSON.stringify(shape)} ${dtype} needs ${expected} bytes, data_offsets give ${end - begin}`);
    }
    entries.push({ name, dtype: dtype as string, shape: shape as number[], begin, end });
  }
  // The format requires the buffer to be covered exactly once: no overlaps, no holes.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of byOffset) {
    if (e.begin !== cursor) {
      fail(e.begin < cursor ? `entry "${e.name}" overlaps the previous tensor at byte ${e.begin}` : `hole in the buffer at byte ${cursor}`);
    }
    cursor = e.end;
  }
  if (cursor !== dataLen) fail(`tensors cover ${cursor} bytes but the buffer holds ${dataLen}`);
  return { entries, dataStart };
}

/** Every tensor with its stored dtype; float16/bfloat16/float64 data upcast to float32. */
export function readSafetensors(input: Uint8Array | ByteSource, source = 'safetensors'): Map<string, SafetensorsEntry> {
  const src = asSource(input);
  const { entries, dataStart } = parseHeader(src, source);
  const out = new Map<string, SafetensorsEntry>();
  for (const e of entries) {
    const raw = src.read(dataStart + e.begin, e.end - e.begin);
    out.set(e.name, { dtype: e.dtype, shape: e.shape, data: decode(e.dtype, raw.buffer, raw.length) });
  }
  return out;
}

/** Every tensor as float32 (integer tensors become their float32 values, e.g. ids or `num_batches_tracked`). */
export function readSafetensorsF32(input: Uint8Array | ByteSource, source = 'safetensors'): StateDict {
  const out: StateDict = new Map();
  for (const [name, t] of readSafetensors(input, source)) {
    const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number | bigint>, Number);
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** torch keeps BatchNorm's batch counter as int64; writing it as such keeps dtype-strict loaders of our output happy. */
const INT64_ENTRY = /(^|\.)num_batches_tracked$/;

/**
 * F32 safetensors, tensors sorted by name, header padded to 8 bytes (byte-identical to the Python writer's output).
 * The file as its header followed by each tensor's bytes in order, as views of the tensors' own arrays (int64
 * entries converted): a checkpoint is streamed to its store without a second copy of 1.8 GB of state.
 */
export function safetensorsParts(tensors: StateDict, metadata?: Record<string, string>): Uint8Array[] {
  const names = [...tensors.keys()].sort(byteOrder);
  const header: Record<string, unknown> = {};
  const payload: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === METADATA_KEY) throw new Error(`tensor name ${METADATA_KEY} is reserved by the safetensors format`);
    const t = tensors.get(name)!;
    const expected = numel(t.shape);
    if (t.data.length !== expected) {
      throw new Error(`tensor "${name}" has ${t.data.length} values but shape ${JSON.stringify(t.shape)} needs ${expected}`);
    }
    const int64 = INT64_ENTRY.test(name);
    const data = int64 ? BigInt64Array.from(t.data, (v) => BigInt(Math.round(v))) : t.data;
    payload.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    header[name] = { dtype: int64 ? 'I64' : 'F32', shape: t.shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  if (metadata) header[METADATA_KEY] = metadata;
  const json = Buffer.from(JSON.stringify(header));
  const headerLen = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + headerLen);
  new DataView(head.buffer).setBigUint64(0, BigInt(headerLen), true);
  head.set(json, 8);
  head.fill(0x20, 8 + json.length);
  return [head, ...payload];
}

/** The whole file in one buffer (small dicts; checkpoints stream safetensorsParts). */
export function writeSafetensors(tensors: StateDict, metadata?: Record<string, string>): Uint8Array {
  return concatArrays(safetensorsParts(tensors, metadata), Uint8Array);
}
