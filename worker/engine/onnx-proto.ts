/**
 * A minimal protobuf encoder for the parts of onnx.proto the engine emits. Field numbers follow onnx/onnx.proto
 * (proto2, so repeated scalars are written unpacked). Encoding only: the engine never reads ONNX back.
 */

import { concatArrays } from '../../core/tensors/tensor.ts';

export const DataType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9, DOUBLE: 11 } as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

export interface TensorProto {
  name: string;
  dims: readonly number[];
  dataType: DataType;
  /** Little-endian bytes; absent when the data lives in an external file. */
  rawData?: Uint8Array;
  external?: { location: string; offset: number; length: number };
}

export interface ValueInfoProto {
  name: string;
  elemType: DataType;
  /** A negative entry is a symbolic dimension (dim_param `N`): the batch of an exported encoder. */
  shape: readonly number[];
}

export type AttributeProto =
  | { name: string; kind: 'int'; value: number }
  | { name: string; kind: 'float'; value: number }
  | { name: string; kind: 'string'; value: string }
  | { name: string; kind: 'ints'; value: readonly number[] }
  | { name: string; kind: 'floats'; value: readonly number[] }
  | { name: string; kind: 'tensor'; value: TensorProto }
  | { name: string; kind: 'graph'; value: GraphProto };

export interface NodeProto {
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  domain?: string;
  attributes: readonly AttributeProto[];
}

export interface GraphProto {
  name: string;
  nodes: readonly NodeProto[];
  initializers: readonly TensorProto[];
  inputs: readonly ValueInfoProto[];
  outputs: readonly ValueInfoProto[];
}

export interface ModelProto {
  irVersion: number;
  opsets: readonly { domain: string; version: number }[];
  producerName: string;
  graph: GraphProto;
}

const WIRE_VARINT = 0;
const WIRE_FIXED32 = 5;
const WIRE_BYTES = 2;

const utf8 = new TextEncoder();

/** Byte strings from this size on are referenced, not copied, until the final buffer is assembled. */
const SPLICE_MIN = 4096;

/**
 * Appends protobuf fields to a growable buffer. Large byte strings (tensor data) are kept as separate parts and
 * nested messages are spliced in, so tensor data is copied exactly once, into the final buffer.
 */
class Writer {
  private parts: Uint8Array[] = [];
  private sealed = 0;
  private buf = new Uint8Array(64);
  private pos = 0;

  private get length(): number {
    return this.sealed + this.pos;
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  private copy(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Moves the small-data buffer into the parts list, so a large part can follow it. */
  private seal(): void {
    if (!this.pos) return;
    this.parts.push(this.buf.subarray(0, this.pos));
    this.sealed += this.pos;
    this.buf = new Uint8Array(64);
    this.pos = 0;
  }

  private varint(v: number): void {
    this.reserve(10);
    if (v < 0) {
      // int64 fields: negatives are written as their 64-bit two's complement (10 bytes).
      let n = BigInt.asUintN(64, BigInt(v));
      for (; n >= 0x80n; n >>= 7n) this.buf[this.pos++] = Number(n & 0x7fn) | 0x80;
      this.buf[this.pos++] = Number(n);
      return;
    }
    for (; v >= 0x80; v = Math.floor(v / 0x80)) this.buf[this.pos++] = (v % 0x80) | 0x80;
    this.buf[this.pos++] = v;
  }

  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  int(field: number, v: number): this {
    this.tag(field, WIRE_VARINT);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, WIRE_FIXED32);
    this.reserve(4);
    new DataView(this.buf.buffer).setFloat32(this.pos, v, true);
    this.pos += 4;
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, WIRE_BYTES);
    this.varint(b.length);
    if (b.length < SPLICE_MIN) this.copy(b);
    else {
      this.seal();
      this.parts.push(b);
      this.sealed += b.length;
    }
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, utf8.encode(s));
  }

  message(field: number, m: Writer): this {
    this.tag(field, WIRE_BYTES);
    this.varint(m.length);
    if (m.parts.length) {
      this.seal();
      for (const p of m.parts) this.parts.push(p);
      this.sealed += m.sealed;
    }
    this.copy(m.buf.subarray(0, m.pos));
    return this;
  }

  finish(): Uint8Array {
    this.seal();
    const only = this.parts[0];
    if (this.parts.length === 1 && only.byteLength === only.buffer.byteLength) return only;
    return concatArrays(this.parts, Uint8Array);
  }
}

function tensor(t: TensorProto): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.dataType).string(8, t.name);
  if (t.rawData) w.bytes(9, t.rawData);
  if (t.external) {
    const entry = (k: string, v: string) => new Writer().string(1, k).string(2, v);
    w.message(13, entry('location', t.external.location));
    w.message(13, entry('offset', String(t.external.offset)));
    w.message(13, entry('length', String(t.external.length)));
    w.int(14, 1); // data_location = EXTERNAL
  }
  return w;
}

function valueInfo(v: ValueInfoProto): Writer {
  const shape = new Writer();
  for (const d of v.shape) shape.message(1, d < 0 ? new Writer().string(2, 'N') : new Writer().int(1, d));
  const tensorType = new Writer().int(1, v.elemType).message(2, shape);
  return new Writer().string(1, v.name).message(2, new Writer().message(1, tensorType));
}

const ATTR_TYPE = { float: 1, int: 2, string: 3, tensor: 4, graph: 5, floats: 6, ints: 7 } as const;

function attribute(a: AttributeProto): Writer {
  const w = new Writer().string(1, a.name).int(20, ATTR_TYPE[a.kind]);
  switch (a.kind) {
    case 'float': return w.float(2, a.value);
    case 'int': return w.int(3, a.value);
    case 'string': return w.string(4, a.value);
    case 'tensor': return w.message(5, tensor(a.value));
    case 'graph': return w.message(6, graph(a.value));
    case 'floats': for (const f of a.value) w.float(7, f); return w;
    case 'ints': for (const i of a.value) w.int(8, i); return w;
  }
}

function node(n: NodeProto): Writer {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const a of n.attributes) w.message(5, attribute(a));
  if (n.domain) w.string(7, n.domain);
  return w;
}

function graph(g: GraphProto): Writer {
  const w = new Writer();
  for (const n of g.nodes) w.message(1, node(n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, tensor(t));
  for (const v of g.inputs) w.message(11, valueInfo(v));
  for (const v of g.outputs) w.message(12, valueInfo(v));
  return w;
}

export function encodeModel(m: ModelProto): Uint8Array {
  const w = new Writer().int(1, m.irVersion);
  w.string(2, m.producerName);
  w.message(7, graph(m.graph));
  for (const o of m.opsets) w.message(8, new Writer().string(1, o.domain).int(2, o.version));
  return w.finish();
}
