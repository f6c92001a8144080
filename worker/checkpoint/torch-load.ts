import type { HostTensor } from '../../core/tensors/tensor.ts';
import { CheckpointError } from '../../core/tensors/errors.ts';
import type { ByteSource } from '../../core/tensors/byte-source.ts';
import { bf16ToF32, f16ToF32 } from '../../core/tensors/half.ts';
import { ZipArchive } from './torch-zip.ts';
import { PyDict, PyGlobal, PyList, PyObject, PyTuple, type PyValue, typeName, unpickle } from './unpickle.ts';

/**
 * torch's zip checkpoint format (`torch.save` since 1.6): `<top>/data.pkl` is a pickle whose tensors point,
 * through persistent ids, at raw storages `<top>/data/<key>`. Tensors are assembled lazily, so an optimizer
 * state stored next to the weights is never decoded.
 */

/** data.pkl of a ViT-L-14 state dict is ~100 KB; an optimizer state adds little more. */
export const MAX_PICKLE_BYTES = 16 * 1024 * 1024;

interface StorageType {
  bytes: number;
  /** `raw` is the zip reader's own buffer at offset 0, so a float32 storage is viewed, not copied. */
  decode(raw: Uint8Array): Float32Array;
}

type TypedArrayOf<T> = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => T;
const as = <T>(Type: TypedArrayOf<T> & { BYTES_PER_ELEMENT: number }, r: Uint8Array): T => new Type(r.buffer, r.byteOffset, r.length / Type.BYTES_PER_ELEMENT);
const fromInts = (xs: ArrayLike<number | bigint>): Float32Array => Float32Array.from(xs, Number);

const STORAGE_TYPES: Record<string, StorageType> = {
  FloatStorage: { bytes: 4, decode: (r) => as(Float32Array, r) },
  HalfStorage: { bytes: 2, decode: (r) => f16ToF32(as(Uint16Array, r)) },
  BFloat16Storage: { bytes: 2, decode: (r) => bf16ToF32(as(Uint16Array, r)) },
  DoubleStorage: { bytes: 8, decode: (r) => Float32Array.from(as(Float64Array, r)) },
  // StateDict is float32: integer buffers (BatchNorm `num_batches_tracked`) become their float32 values.
  LongStorage: { bytes: 8, decode: (r) => fromInts(as(BigInt64Array, r)) },
  IntStorage: { bytes: 4, decode: (r) => fromInts(as(Int32Array, r)) },
  ByteStorage: { bytes: 1, decode: (r) => Float32Array.from(r) },
  BoolStorage: { bytes: 1, decode: (r) => Float32Array.from(r, (b) => (b ? 1 : 0)) },
};

export class TorchStorage extends PyObject {
  readonly typeName = 'torch storage';
  constructor(
    readonly type: string,
    readonly key: string,
    readonly numel: number,
  ) {
    super();
  }
}

export class TorchTensor extends PyObject {
  readonly typeName = 'torch.Tensor';
  constructor(
    readonly storage: TorchStorage,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
    private readonly archive: TorchArchive,
  ) {
    super();
  }

  /** A row-major float32 copy (views that share a storage each get their own data). */
  toHost(name: string): HostTensor {
    return this.archive.materialize(this, name);
  }
}

function ints(v: PyValue, what: string, fail: (r: string) => never): number[] {
  if (!(v instanceof PyTuple) || !v.items.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    const shown = v instanceof PyTuple ? `(${v.items.map((x) => (typeof x === 'number' ? x : typeName(x))).join(', ')})` : typeName(v);
    return fail(`${what} must be a tuple of non-negative ints, got ${shown}`);
  }
  return v.items as number[];
}

class TorchArchive {
  private readonly cache = new Map<string, Float32Array>();
  /** Tensors per storage key not yet materialized: a decoded storage is dropped (or handed over) after its last one. */
  private readonly pending = new Map<string, number>();
  private readonly storages = new Map<string, TorchStorage>();
  /** Per storage key, one past the highest element any non-empty tensor of the pickle reaches. */
  private readonly reach = new Map<string, number>();
  private outputBudget: number;
  readonly top: string;
  private readonly bigEndian: boolean;

  constructor(
    private readonly zip: ZipArchive,
    readonly source: string,
  ) {
    const first = zip.names[0];
    const slash = first?.indexOf('/') ?? -1;
    if (!first || slash <= 0) this.fail(`not a torch checkpoint: first entry ${JSON.stringify(first ?? '')} is not inside a top folder`);
    this.top = first.slice(0, slash);
    this.bigEndian = this.readByteorder();
    // Decoded storages and the copies views need: half-precision upcasts and views may legitimately produce more
    // than the archive holds, but not absurdly more.
    this.outputBudget = 4 * zip.byteLength + (1 << 20);
  }

  fail(reason: string): never {
    throw new CheckpointError(this.source, reason);
  }

  private readByteorder(): boolean {
    const name = `${this.top}/byteorder`;
    if (!this.zip.has(name)) return false;
    const order = Buffer.from(this.zip.read(name, 16)).toString('latin1').trim();
    if (order !== 'little' && order !== 'big') this.fail(`${name} says ${JSON.stringify(order)}, expected "little" or "big"`);
    return order === 'big';
  }

  unpickle(): PyValue {
    if (this.zip.has(`${this.top}/constants.pkl`)) {
      this.fail('a TorchScript archive (torch.jit.save), not a state dict; save model.state_dict() with torch.save instead');
    }
    const name = `${this.top}/data.pkl`;
    if (!this.zip.has(name)) this.fail(`not a torch checkpoint: ${name} is missing`);
    return unpickle(this.zip.read(name, MAX_PICKLE_BYTES), {
      source: `${this.source} (${name})`,
      globals: this.globals(),
      persistentLoad: (pid) => this.persistentLoad(pid),
    });
  }

  private globals(): Map<string, PyGlobal> {
    const fail = (r: string): never => this.fail(r);
    const list: PyGlobal[] = [
      new PyGlobal('collections', 'OrderedDict', (args) => {
        const d = new PyDict();
        if (args.length === 0) return d;
        const [pairs] = args;
        if (args.length !== 1 || !(pairs instanceof PyList)) return fail('OrderedDict(...) takes no arguments or a list of pairs');
        for (const p of pairs.items) {
          if (!(p instanceof PyTuple) || p.items.length !== 2 || typeof p.items[0] !== 'string') return fail('OrderedDict pair is not (str, value)');
          d.map.set(p.items[0], p.items[1]!);
        }
        return d;
      }),
      new PyGlobal('torch._utils', '_rebuild_tensor_v2', (args) => {
        const [storage, offset, size, stride] = args;
        if (args.length < 6 || args.length > 7) return fail(`_rebuild_tensor_v2 takes 6 or 7 arguments, got ${args.length}`);
        if (!(storage instanceof TorchStorage)) return fail(`_rebuild_tensor_v2 storage is a ${typeName(storage!)}`);
        if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) return fail('_rebuild_tensor_v2 storage_offset is not a non-negative int');
        const shape = ints(size!, 'tensor size', fail);
        const strides = ints(stride!, 'tensor stride', fail);
        if (shape.length !== strides.length) return fail(`tensor size ${JSON.stringify(shape)} and stride ${JSON.stringify(strides)} differ in length`);
        this.pending.set(storage.key, (this.pending.get(storage.key) ?? 0) + 1);
        if (shape.every((d) => d > 0)) {
          const end = shape.reduce((acc, d, i) => acc + (d - 1) * strides[i]!, offset) + 1;
          this.reach.set(storage.key, Math.max(this.reach.get(storage.key) ?? 0, end));
        }
        return new TorchTensor(storage, offset, shape, strides, this);
      }),
      new PyGlobal('torch._utils', '_rebuild_parameter', (args) => {
        if (args.length !== 3 || !(args[0] instanceof TorchTensor)) return fail('_rebuild_parameter takes (tensor, requires_grad, hooks)');
        return args[0];
      }),
      ...Object.keys(STORAGE_TYPES).map((t) => new PyGlobal('torch', t)),
    ];
    return new Map(list.map((g) => [g.qualname, g]));
  }

  private persistentLoad(pid: PyValue): TorchStorage {
    const [tag, type, key, , numel] = pid instanceof PyTuple ? pid.items : [];
    if (!(pid instanceof PyTuple) || pid.items.length !== 5 || tag !== 'storage') this.fail("persistent id is not ('storage', type, key, location, numel)");
    if (!(type instanceof PyGlobal) || type.module !== 'torch' || !(type.name in STORAGE_TYPES)) this.fail(`storage type ${typeName(type!)} is not supported`);
    if (typeof key !== 'string' || !/^[\w.-]{1,64}$/.test(key)) this.fail(`storage key ${JSON.stringify(key)} is not a plain name`);
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) this.fail(`storage ${key} has an invalid element count`);
    const seen = this.storages.get(key);
    if (seen && (seen.type !== type.name || seen.numel !== numel)) this.fail(`storage ${key} is declared twice with different types or sizes`);
    const s = seen ?? new TorchStorage(type.name, key, numel);
    this.storages.set(key, s);
    return s;
  }

  /** Everything the load allocates for tensors counts against one budget, which the file's size justifies. */
  private charge(bytes: number, what: string): void {
    if (bytes > this.outputBudget) this.fail(`${what} would need more memory than the checkpoint can justify`);
    this.outputBudget -= bytes;
  }

  private storageData(s: TorchStorage): Float32Array {
    const hit = this.cache.get(s.key);
    if (hit) return hit;
    const name = `${this.top}/data/${s.key}`;
    const entry = this.zip.entry(name);
    if (!entry) this.fail(`storage entry ${name} is missing`);
    const type = STORAGE_TYPES[s.type]!;
    const want = s.numel * type.bytes;
    if (entry.size !== want) this.fail(`storage ${name} holds ${entry.size} bytes, but ${s.numel} ${s.type} elements need ${want}`);
    // A state dict's tensors cover their storages; bytes past every tensor would be inflated only to be dropped.
    const reach = this.reach.get(s.key)! * type.bytes;
    if (want > reach) this.fail(`storage ${name} declares ${want} bytes, but the tensors that use it reach only the first ${reach}`);
    this.charge(4 * s.numel, `storage ${name} (${s.numel} ${s.type} elements)`);
    const raw = this.zip.read(name, want);
    if (this.bigEndian && type.bytes > 1) {
      const b = Buffer.from(raw.buffer, raw.byteOffset, raw.length);
      if (type.bytes === 2) b.swap16();
      else if (type.bytes === 4) b.swap32();
      else b.swap64();
    }
    const data = type.decode(raw);
    this.cache.set(s.key, data);
    return data;
  }

  materialize(t: TorchTensor, name: string): HostTensor {
    const { size, stride, offset, storage } = t;
    const n = size.reduce((a, b) => a * b, 1);
    const desc = `tensor ${name} (size ${JSON.stringify(size)}, stride ${JSON.stringify(stride)}, offset ${offset})`;
    if (n > 0) {
      const last = size.reduce((acc, d, i) => acc + (d - 1) * stride[i]!, offset);
      if (last >= storage.numel) this.fail(`${desc} reaches element ${last} of storage ${storage.key}, which has ${storage.numel}`);
    }
    // Refused before its storage is read, whichever way the data would then be produced.
    if (4 * n > this.outputBudget) this.fail(`${desc} would need more memory than the checkpoint can justify`);
    const left = this.pending.get(storage.key)! - 1;
    this.pending.set(storage.key, left);
    // An empty tensor needs no byte of its storage.
    const src = n > 0 ? this.storageData(storage) : new Float32Array(0);
    if (left === 0) {
      this.cache.delete(storage.key);
      // The last user of a decoded storage takes it over when it is the whole storage: one copy of the weights, not two.
      if (offset === 0 && n === src.length && isRowMajor(size, stride)) return { shape: [...size], data: src };
    }
    this.charge(4 * n, desc);
    return { shape: [...size], data: gather(src, offset, size, stride, n) };
  }
}

function isRowMajor(size: number[], stride: number[]): boolean {
  for (let i = size.length - 1, expect = 1; i >= 0; i--) {
    if (size[i] !== 1 && stride[i] !== expect) return false;
    expect *= size[i]!;
  }
  return true;
}

/** Copies a strided view out of its storage into row-major order. */
function gather(src: Float32Array, offset: number, size: number[], stride: number[], n: number): Float32Array {
  if (isRowMajor(size, stride)) return src.slice(offset, offset + n);
  const out = new Float32Array(n);
  const rank = size.length;
  const idx = new Array<number>(rank).fill(0);
  const inner = size[rank - 1]!;
  const innerStride = stride[rank - 1]!;
  for (let o = 0, base = offset; o < n; ) {
    for (let j = 0; j < inner; j++) out[o++] = src[base + j * innerStride]!;
    // Advance the outer indices like an odometer.
    for (let d = rank - 2; d >= 0; d--) {
      base += stride[d]!;
      if (++idx[d]! < size[d]!) break;
      base -= stride[d]! * size[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/** Unpickles a torch zip checkpoint; tensors in the result are TorchTensor (call toHost to read them). */
export function readTorchZip(src: ByteSource, source: string): PyValue {
  return new TorchArchive(new ZipArchive(src, source), source).unpickle();
}
