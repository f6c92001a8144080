import { deflateRawSync } from 'node:zlib';

/**
 * Writers for torch checkpoints without torch, for the tests and the benchmarks (the product reads .pt files and
 * never writes one): a pickle assembler that emits the same opcodes
 * torch.save does (protocol 2, or protocol 4 framing), and a ZIP writer with the knobs the loader must handle
 * (deflate, torch's 64-byte alignment padding, forced ZIP64 records).
 */

export class Pickle {
  private readonly out: number[] = [];
  private memo = 0;

  constructor(readonly protocol: 2 | 4 = 2) {
    this.op(0x80, protocol);
  }

  op(...bytes: number[]): this {
    for (const b of bytes) this.out.push(b);
    return this;
  }
  private u32(n: number): this {
    return this.op(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }
  str(s: string): this {
    const b = Buffer.from(s);
    if (this.protocol === 4 && b.length < 256) this.op(0x8c, b.length);
    else this.op(0x58).u32(b.length);
    this.op(...b);
    return this.put();
  }
  int(n: number | bigint): this {
    if (typeof n === 'number' && n >= 0 && n < 256) return this.op(0x4b, n);
    if (typeof n === 'number' && n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >> 8);
    if (typeof n === 'number' && n >= -(2 ** 31) && n < 2 ** 31) return this.op(0x4a).u32(n >>> 0);
    let v = BigInt(n);
    const bytes: number[] = [];
    do {
      bytes.push(Number(v & 0xffn));
      v >>= 8n;
    } while (!(v === 0n && !(bytes[bytes.length - 1]! & 0x80)) && !(v === -1n && bytes[bytes.length - 1]! & 0x80));
    return this.op(0x8a, bytes.length, ...bytes);
  }
  float(x: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(x);
    return this.op(0x47, ...b);
  }
  bool(v: boolean): this {
    return this.op(v ? 0x88 : 0x89);
  }
  none(): this {
    return this.op(0x4e);
  }
  global(module: string, name: string): this {
    if (this.protocol === 4) return this.str(module).str(name).op(0x93).put();
    return this.op(0x63, ...Buffer.from(`${module}\n${name}\n`)).put();
  }
  /** Memoizes the top of the stack the way the protocol does; returns nothing useful, the index is implicit. */
  put(): this {
    if (this.protocol === 4) this.op(0x94);
    else if (this.memo < 256) this.op(0x71, this.memo);
    else this.op(0x72).u32(this.memo);
    this.memo++;
    return this;
  }
  /** The memo index the next put() will use. */
  get nextMemo(): number {
    return this.memo;
  }
  get(i: number): this {
    return i < 256 ? this.op(0x68, i) : this.op(0x6a).u32(i);
  }
  mark(): this {
    return this.op(0x28);
  }
  tuple(): this {
    return this.op(0x74);
  }
  emptyTuple(): this {
    return this.op(0x29);
  }
  emptyDict(): this {
    return this.op(0x7d);
  }
  emptyList(): this {
    return this.op(0x5d);
  }
  setitems(): this {
    return this.op(0x75);
  }
  appends(): this {
    return this.op(0x65);
  }
  reduce(): this {
    return this.op(0x52);
  }
  stop(): Uint8Array {
    this.op(0x2e);
    if (this.protocol === 4) {
      // One FRAME around everything after PROTO, as pickle protocol 4 writes small pickles.
      const body = this.out.slice(2);
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(body.length));
      return Uint8Array.from([0x80, 4, 0x95, ...len, ...body]);
    }
    return Uint8Array.from(this.out);
  }
}

export type StorageType = 'FloatStorage' | 'HalfStorage' | 'BFloat16Storage' | 'DoubleStorage' | 'LongStorage' | 'IntStorage' | 'ByteStorage' | 'BoolStorage';

export interface TensorSpec {
  storage: { key: string; type: StorageType; numel: number };
  offset?: number;
  size: number[];
  /** Defaults to row-major. */
  stride?: number[];
}

const rowMajor = (size: number[]): number[] => size.map((_, i) => size.slice(i + 1).reduce((a, b) => a * b, 1));

/** Emits `_rebuild_tensor_v2(<persistent storage>, offset, size, stride, False, OrderedDict())` like torch.save. */
export function writeTensor(p: Pickle, t: TensorSpec): Pickle {
  p.global('torch._utils', '_rebuild_tensor_v2').mark();
  p.mark().str('storage').global('torch', t.storage.type).str(t.storage.key).str('cpu').int(t.storage.numel).tuple().put().op(0x51);
  p.int(t.offset ?? 0);
  p.mark();
  for (const d of t.size) p.int(d);
  p.tuple();
  p.mark();
  for (const s of t.stride ?? rowMajor(t.size)) p.int(s);
  p.tuple();
  p.bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce().put();
  return p;
}

/** A value of a torch.save()d object tree. */
export type SaveValue = TensorSpec | number | string | boolean | null | SaveValue[] | { tuple: SaveValue[] } | Map<string | number, SaveValue>;

function isTensor(v: SaveValue): v is TensorSpec {
  return typeof v === 'object' && v !== null && 'storage' in v;
}

/** Writes a value the way torch.save pickles it: dicts of strings are OrderedDicts, other maps plain dicts. */
export function writeValue(p: Pickle, v: SaveValue): Pickle {
  if (v === null) return p.none();
  if (typeof v === 'boolean') return p.bool(v);
  if (typeof v === 'number') return Number.isInteger(v) ? p.int(v) : p.float(v);
  if (typeof v === 'string') return p.str(v);
  if (isTensor(v)) return writeTensor(p, v);
  if (Array.isArray(v)) {
    p.emptyList().put().mark();
    for (const x of v) writeValue(p, x);
    return p.appends();
  }
  if (v instanceof Map) {
    const ordered = [...v.keys()].every((k) => typeof k === 'string');
    if (ordered) p.global('collections', 'OrderedDict').emptyTuple().reduce().put();
    else p.emptyDict().put();
    p.mark();
    for (const [k, x] of v) writeValue(typeof k === 'string' ? p.str(k) : p.int(k), x);
    return p.setitems();
  }
  p.mark();
  for (const x of v.tuple) writeValue(p, x);
  return p.tuple().put();
}

export interface ZipInput {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

export interface ZipOptions {
  /** Pad each local header's extra field so data starts on this boundary (torch >= 1.? writes 64, 'FB' records). */
  align?: number;
  /** Write ZIP64 end records and 0xffffffff placeholders with ZIP64 extra fields, as if the archive were > 4 GB. */
  zip64?: boolean;
}

export function writeZip(entries: ZipInput[], opts: ZipOptions = {}): Uint8Array {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let pos = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const body = e.deflate ? deflateRawSync(e.data) : Buffer.from(e.data);
    let extra = Buffer.alloc(0);
    if (opts.align) {
      const pad = (opts.align - ((pos + 30 + name.length + 4) % opts.align)) % opts.align;
      extra = Buffer.alloc(4 + pad);
      extra.write('FB', 0, 'latin1');
      extra.writeUInt16LE(pad, 2);
    }
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(opts.zip64 ? 45 : 20, 4);
    local.writeUInt16LE(e.deflate ? 8 : 0, 8);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    parts.push(local, name, extra, body);

    const z64 = Buffer.alloc(opts.zip64 ? 28 : 0);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(opts.zip64 ? 45 : 20, 4);
    cd.writeUInt16LE(opts.zip64 ? 45 : 20, 6);
    cd.writeUInt16LE(e.deflate ? 8 : 0, 10);
    if (opts.zip64) {
      z64.writeUInt16LE(1, 0);
      z64.writeUInt16LE(24, 2);
      z64.writeBigUInt64LE(BigInt(e.data.length), 4);
      z64.writeBigUInt64LE(BigInt(body.length), 12);
      z64.writeBigUInt64LE(BigInt(pos), 20);
    }
    cd.writeUInt32LE(opts.zip64 ? 0xffffffff : body.length, 20);
    cd.writeUInt32LE(opts.zip64 ? 0xffffffff : e.data.length, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt16LE(z64.length, 30);
    cd.writeUInt32LE(opts.zip64 ? 0xffffffff : pos, 42);
    central.push(cd, name, z64);
    pos += 30 + name.length + extra.length + body.length;
  }
  const cdBytes = Buffer.concat(central);
  const tail: Buffer[] = [cdBytes];
  const cdOffset = pos;
  if (opts.zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(entries.length), 24);
    rec.writeBigUInt64LE(BigInt(entries.length), 32);
    rec.writeBigUInt64LE(BigInt(cdBytes.length), 40);
    rec.writeBigUInt64LE(BigInt(cdOffset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(cdOffset + cdBytes.length), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(rec, loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : entries.length, 8);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : entries.length, 10);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cdBytes.length, 12);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cdOffset, 16);
  tail.push(eocd);
  return new Uint8Array(Buffer.concat([...parts, ...tail]));
}

/** A torch.save()-style archive of `value` with the given raw storages (`top/data.pkl`, `top/data/<key>`, `top/version`). */
export function torchSave(value: SaveValue, storages: Record<string, Uint8Array>, opts: ZipOptions & { top?: string; protocol?: 2 | 4; newer?: boolean } = {}): Uint8Array {
  const top = opts.top ?? 'archive';
  const pkl = writeValue(new Pickle(opts.protocol ?? 2), value).stop();
  const entries: ZipInput[] = [{ name: `${top}/data.pkl`, data: pkl }];
  // Newer torch writes these extra records; a loader must skip what it does not need.
  if (opts.newer) {
    entries.push({ name: `${top}/.format_version`, data: Buffer.from('1') }, { name: `${top}/.storage_alignment`, data: Buffer.from('64') }, { name: `${top}/byteorder`, data: Buffer.from('little') });
  }
  for (const [k, b] of Object.entries(storages)) entries.push({ name: `${top}/data/${k}`, data: b });
  entries.push({ name: `${top}/version`, data: Buffer.from('3\n') });
  if (opts.newer) entries.push({ name: `${top}/.data/serialization_id`, data: Buffer.from('1234567890123456789012345678901234567890') });
  return writeZip(entries, opts);
}

export const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
