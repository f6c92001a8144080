/**
 * The graph builder: tensors with static shapes, raw ONNX nodes, constants, initializers and subgraphs (Loop/If
 * bodies), serialised through onnx-proto.ts. Differentiable ops (ops.ts) record tape entries here; autodiff.ts
 * walks them backwards.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import {
  DataType,
  encodeModel,
  type AttributeProto,
  type GraphProto,
  type NodeProto,
  type TensorProto,
} from './onnx-proto.ts';

export type DType = 'float32' | 'float64' | 'int64' | 'int32' | 'bool' | 'uint8';

export const ONNX_TYPE: Record<DType, DataType> = {
  float32: DataType.FLOAT,
  float64: DataType.DOUBLE,
  int64: DataType.INT64,
  int32: DataType.INT32,
  bool: DataType.BOOL,
  uint8: DataType.UINT8,
};

export const isFloat = (d: DType): boolean => d === 'float32' || d === 'float64';

/** A float-typed attribute; plain integers become INT attributes, non-integers FLOAT. */
export class FloatAttr {
  constructor(readonly value: number | readonly number[]) {}
}
export const floatAttr = (v: number | readonly number[]): FloatAttr => new FloatAttr(v);

export type AttrValue = number | string | readonly number[] | Graph | FloatAttr;

type TensorKind = 'input' | 'initializer' | 'node';

export class Tensor {
  /** Mutable only so that Graph.output can emit a node's value under its final name (no Identity copy). */
  _name: string;
  constructor(
    readonly graph: Graph,
    name: string,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly kind: TensorKind,
  ) {
    this._name = name;
  }
  get name(): string {
    return this._name;
  }
  toString(): string {
    return `${this._name}: ${this.dtype}[${this.shape.join(',')}]`;
  }
}

/** One differentiable op application, as recorded for reverse mode. */
export interface TapeEntry {
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  /** need[i]: whether input i wants a gradient. */
  vjp(grads: readonly (Tensor | undefined)[], need: readonly boolean[]): (Tensor | undefined)[];
}

interface NodeRecord {
  opType: string;
  inputs: readonly (Tensor | undefined)[];
  outputs: readonly Tensor[];
  attrs: Record<string, AttrValue>;
  domain?: string;
}

type InitData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

const DTYPE_OF_ARRAY = (d: InitData): DType =>
  d instanceof Float32Array ? 'float32'
  : d instanceof Float64Array ? 'float64'
  : d instanceof BigInt64Array ? 'int64'
  : d instanceof Int32Array ? 'int32'
  : 'uint8';

function typedArray(dtype: DType, values: ArrayLike<number | bigint>): InitData {
  const n = values.length;
  switch (dtype) {
    case 'float32': return Float32Array.from({ length: n }, (_, i) => Number(values[i]));
    case 'float64': return Float64Array.from({ length: n }, (_, i) => Number(values[i]));
    case 'int64': return BigInt64Array.from({ length: n }, (_, i) => BigInt(values[i]));
    case 'int32': return Int32Array.from({ length: n }, (_, i) => Number(values[i]));
    case 'bool':
    case 'uint8': return Uint8Array.from({ length: n }, (_, i) => Number(values[i]));
  }
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Constants up to this many elements are deduplicated by value. */
const DEDUPE_LIMIT = 64;
/** Initializers from this size on go to the external data file when one is requested. */
const EXTERNAL_MIN_BYTES = 1024;

export class Graph {
  readonly name: string;
  readonly opset: number;
  /** The float type numbers become when no other operand fixes one. */
  readonly dtype: 'float32' | 'float64';
  readonly parent?: Graph;
  readonly tape: TapeEntry[] = [];

  private readonly root: Graph;
  private readonly usedNames: Set<string>;
  private readonly nodes: NodeRecord[] = [];
  private readonly inputs: Tensor[] = [];
  private readonly inits: { tensor: Tensor; data: InitData }[] = [];
  private readonly outputs: Tensor[] = [];
  private readonly constants = new Map<string, Tensor>();
  private counter = 0;

  constructor(opts: { name?: string; opset?: number; dtype?: 'float32' | 'float64' } = {}, parent?: Graph) {
    this.name = opts.name ?? 'graph';
    this.opset = opts.opset ?? parent?.opset ?? 18;
    // Reduce*/Split/Squeeze take axes and sizes as inputs from opset 18; onnxruntime 1.30 runs up to 26.
    if (this.opset < 18 || this.opset > 26) throw new Error(`graph ${this.name}: opset ${this.opset} is outside 18..26`);
    this.dtype = opts.dtype ?? parent?.dtype ?? 'float32';
    this.parent = parent;
    this.root = parent ? parent.root : this;
    this.usedNames = parent ? parent.usedNames : new Set();
  }

  /** A body graph for Loop/If: its nodes may read this graph's tensors (outer scope); names stay unique model-wide. */
  subgraph(name = 'body'): Graph {
    return new Graph({ name }, this);
  }

  /** True when `t` is visible here: created in this graph or an enclosing one. */
  sees(t: Tensor): boolean {
    for (let g: Graph | undefined = this; g; g = g.parent) if (t.graph === g) return true;
    return false;
  }

  /** Nesting depth (0 for the model's main graph). */
  get depth(): number {
    return this.parent ? this.parent.depth + 1 : 0;
  }

  private claim(name: string): string {
    if (this.usedNames.has(name)) throw new Error(`graph ${this.root.name}: name "${name}" is already defined`);
    this.usedNames.add(name);
    return name;
  }

  /** An unused name (not yet claimed). */
  private freshName(prefix: string): string {
    let name: string;
    do name = `${prefix}_${this.root.counter++}`;
    while (this.usedNames.has(name));
    return name;
  }

  private fresh(prefix: string): string {
    return this.claim(this.freshName(prefix));
  }

  input(name: string, dtype: DType, shape: number[]): Tensor {
    const t = new Tensor(this, this.claim(name), [...shape], dtype, 'input');
    this.inputs.push(t);
    return t;
  }

  initializer(name: string, data: InitData, shape: number[]): Tensor {
    if (numel(shape) !== data.length) {
      throw new Error(`initializer ${name}: ${data.length} values do not fill shape [${shape.join(',')}]`);
    }
    const t = new Tensor(this, this.claim(name), [...shape], DTYPE_OF_ARRAY(data), 'initializer');
    this.inits.push({ tensor: t, data });
    return t;
  }

  /** A constant tensor (an initializer with a generated name); small ones are shared by value. */
  constant(value: number | readonly number[] | Float32Array | BigInt64Array, shape?: number[], dtype?: DType): Tensor {
    const dt: DType = dtype ?? (value instanceof BigInt64Array ? 'int64' : value instanceof Float32Array ? 'float32' : this.dtype);
    const values: ArrayLike<number | bigint> = typeof value === 'number' ? [value] : value;
    const shp = shape ?? (typeof value === 'number' ? [] : [values.length]);
    const n = numel(shp);
    const key = n <= DEDUPE_LIMIT ? `${dt}|${shp.join(',')}|${Array.from(values).join(',')}` : undefined;
    const hit = key && this.constants.get(key);
    if (hit) return hit;
    const data = typedArray(dt, values.length === 1 && n !== 1 ? Array.from({ length: n }, () => values[0]) : values);
    if (data.length !== n) throw new Error(`constant: ${values.length} values do not fill shape [${shp.join(',')}]`);
    const t = new Tensor(this, this.fresh('const'), shp, dt, 'initializer');
    this.inits.push({ tensor: t, data });
    if (key) this.constants.set(key, t);
    return t;
  }

  /** A raw ONNX node (not differentiable). Undefined inputs are omitted optional inputs. */
  node(
    opType: string,
    inputs: (Tensor | undefined)[],
    attrs: Record<string, AttrValue>,
    outputs: { dtype: DType; shape: readonly number[] }[],
    opts: { domain?: string } = {},
  ): Tensor[] {
    for (const t of inputs) {
      if (t && !this.sees(t)) throw new Error(`${opType}: input ${t.name} belongs to another graph`);
    }
    for (const v of Object.values(attrs)) {
      if (v instanceof Graph && v.parent !== this) throw new Error(`${opType}: subgraph must come from this graph's subgraph()`);
    }
    const outs = outputs.map((o) => new Tensor(this, this.fresh(opType), [...o.shape], o.dtype, 'node'));
    this.nodes.push({ opType, inputs, outputs: outs, attrs, domain: opts.domain });
    return outs;
  }

  /** Records a differentiable op application (called by ops.ts). */
  record(entry: TapeEntry): void {
    this.tape.push(entry);
  }

  /** Declares a graph output. A node result of this graph is renamed in place; anything else goes through Identity. */
  output(t: Tensor, name: string): void {
    if (t.graph === this && t.kind === 'node' && !this.outputs.includes(t)) {
      if (t.name !== name) {
        this.claim(name);
        this.usedNames.delete(t.name);
        t._name = name;
      }
      this.outputs.push(t);
      return;
    }
    if (!this.sees(t)) throw new Error(`output ${name}: ${t.name} belongs to another graph`);
    this.claim(name);
    const out = new Tensor(this, name, t.shape, t.dtype, 'node');
    this.nodes.push({ opType: 'Identity', inputs: [t], outputs: [out], attrs: {} });
    this.outputs.push(out);
  }

  /**
   * An ONNX Loop of `trips` iterations: `step` maps (iteration index, state) to the next state and optional per-iteration
   * values, which come back stacked as [trips, ...shape]. Inside `step`, ops whose operands are all outer tensors are
   * emitted outside the loop (computed once), which is correct because they cannot depend on the iteration.
   */
  loop(
    trips: number,
    init: Tensor[],
    step: (iter: Tensor, state: Tensor[]) => { state: Tensor[]; scan?: Tensor[] },
  ): { state: Tensor[]; scan: Tensor[] } {
    const body = this.subgraph(this.freshName('loop_body'));
    const iter = body.input(this.freshName('iter'), 'int64', []);
    const cond = body.input(this.freshName('cond'), 'bool', []);
    const state = init.map((t) => body.input(this.freshName('carried'), t.dtype, [...t.shape]));
    const next = step(iter, state);
    const scan = next.scan ?? [];
    if (next.state.length !== init.length || next.state.some((t, i) => t.dtype !== init[i].dtype || t.shape.join() !== init[i].shape.join())) {
      throw new Error('loop: the step must return a state of the same dtypes and shapes as the initial one');
    }
    body.output(cond, this.freshName('cond_out'));
    for (const t of [...next.state, ...scan]) body.output(t, this.freshName('body_out'));
    const outs = this.node('Loop', [this.constant(BigInt64Array.of(BigInt(trips)), []), undefined, ...init], { body }, [
      ...init.map((t) => ({ dtype: t.dtype, shape: t.shape })),
      ...scan.map((t) => ({ dtype: t.dtype, shape: [trips, ...t.shape] })),
    ]);
    return { state: outs.slice(0, init.length), scan: outs.slice(init.length) };
  }

  /** Output tensors in declaration order. */
  get outputTensors(): readonly Tensor[] {
    return this.outputs;
  }

  proto(external?: { location: string; chunks: Uint8Array[]; offset: number }): GraphProto {
    const tensorProto = ({ tensor, data }: { tensor: Tensor; data: InitData }): TensorProto => {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const base = { name: tensor.name, dims: tensor.shape, dataType: ONNX_TYPE[tensor.dtype] };
      if (!external || bytes.length < EXTERNAL_MIN_BYTES) return { ...base, rawData: bytes };
      const ref = { location: external.location, offset: external.offset, length: bytes.length };
      external.chunks.push(bytes);
      external.offset += bytes.length;
      return { ...base, external: ref };
    };
    const valueInfo = (t: Tensor) => ({ name: t.name, elemType: ONNX_TYPE[t.dtype], shape: t.shape });
    return {
      name: this.name,
      nodes: this.nodes.map((n): NodeProto => ({
        opType: n.opType,
        inputs: n.inputs.map((t) => t?.name ?? ''),
        outputs: n.outputs.map((t) => t.name),
        domain: n.domain,
        attributes: Object.entries(n.attrs).map(([name, v]) => attribute(name, v, external)),
      })),
      initializers: this.inits.map(tensorProto),
      inputs: this.inputs.map(valueInfo),
      outputs: this.outputs.map(valueInfo),
    };
  }

  private domains(into: Set<string>): Set<string> {
    for (const n of this.nodes) {
      if (n.domain) into.add(n.domain);
      for (const v of Object.values(n.attrs)) if (v instanceof Graph) v.domains(into);
    }
    return into;
  }

  /**
   * ModelProto bytes (IR 8). With `externalData`, initializers of 1 KiB or more are written to that file and
   * referenced by its base name, so the model must be saved next to it and opened by path.
   */
  toModel(opts: { externalData?: string } = {}): Uint8Array {
    if (this.parent) throw new Error(`toModel: ${this.name} is a subgraph`);
    const external = opts.externalData
      ? { location: basename(opts.externalData), chunks: [] as Uint8Array[], offset: 0 }
      : undefined;
    const graph = this.proto(external);
    if (external && opts.externalData) {
      const fd = openSync(opts.externalData, 'w');
      try {
        for (const c of external.chunks) writeSync(fd, c);
      } finally {
        closeSync(fd);
      }
    }
    const opsets = [{ domain: '', version: this.opset }];
    for (const d of this.domains(new Set())) opsets.push({ domain: d, version: 1 });
    return encodeModel({ irVersion: 8, opsets, producerName: 'rsclip-engine', graph });
  }
}

function attribute(name: string, v: AttrValue, external?: Parameters<Graph['proto']>[0]): AttributeProto {
  if (v instanceof Graph) return { name, kind: 'graph', value: v.proto(external) };
  if (v instanceof FloatAttr) {
    return typeof v.value === 'number' ? { name, kind: 'float', value: v.value } : { name, kind: 'floats', value: v.value };
  }
  if (typeof v === 'string') return { name, kind: 'string', value: v };
  if (typeof v === 'number') return Number.isInteger(v) ? { name, kind: 'int', value: v } : { name, kind: 'float', value: v };
  return v.every(Number.isInteger) ? { name, kind: 'ints', value: v } : { name, kind: 'floats', value: v };
}
