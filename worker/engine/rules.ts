/**
 * The op table: for every differentiable op, its shape/dtype rule, its ONNX emission and its VJP side by side
 * (like PyTorch's derivatives.yaml). VJPs are written with ops.ts, so gradients are graphs of the same ops.
 * `need[i]` says whether input i wants a gradient; rules skip the others so no dead nodes are emitted.
 */
import { floatAttr, isFloat, ONNX_TYPE, type AttrValue, type DType, type Graph, type Tensor } from './graph.ts';
import * as ops from './ops.ts';

export interface Spec {
  dtype: DType;
  shape: number[];
}
type Grads = readonly (Tensor | undefined)[];
type InGrads = (Tensor | undefined)[];

export interface Rule<A> {
  /** Output dtypes and shapes; throws a clear error for invalid operands. */
  infer(ins: readonly Tensor[], a: A): Spec[];
  /** Emits the ONNX nodes; returns the outputs in `outs` order. */
  emit(g: Graph, ins: readonly Tensor[], a: A, outs: Spec[]): Tensor[];
  /** Input gradients from output gradients; absent for non-differentiable ops. */
  vjp?(ins: readonly Tensor[], outs: readonly Tensor[], grads: Grads, a: A, need: readonly boolean[]): InGrads;
}

type NoAttrs = Record<string, never>;

/** Throws the op's error naming its operands (shared by op tables). */
export const fail = (op: string, msg: string, ins: readonly Tensor[]): never => {
  throw new Error(`${op}: ${msg} (operands ${ins.map(String).join(', ')})`);
};

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
const numel = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);
const normAxis = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/** numpy broadcasting of several shapes. */
export function broadcastShapes(op: string, ins: readonly Tensor[], shapes: readonly (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  return Array.from({ length: rank }, (_, i) => {
    let d = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + i] ?? 1;
      if (v !== 1 && d !== 1 && v !== d) fail(op, `shapes do not broadcast`, ins);
      if (v !== 1) d = v;
    }
    return d;
  });
}

/** An int64 vector constant; out-of-range values (e.g. Infinity as a slice end) saturate. */
const i64 = (g: Graph, values: readonly number[]) =>
  g.constant(BigInt64Array.from(values, (v) => BigInt(Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, v)))));

/** Sums a broadcast gradient back to `shape` (ReduceSum over expanded axes, then Reshape). */
function unbroadcast(grad: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(grad.shape, shape)) return grad;
  const lead = grad.shape.length - shape.length;
  const axes = grad.shape.flatMap((d, i) => (i < lead || (shape[i - lead] === 1 && d !== 1) ? [i] : []));
  return ops.reshape(axes.length ? ops.reduceSum(grad, axes, true) : grad, [...shape]);
}

const zeros = (like: { shape: readonly number[]; dtype: DType }, g: Graph) =>
  ops.expand(g.constant(0, [], like.dtype), [...like.shape]);

const swapLast = (x: Tensor): Tensor => {
  const p = x.shape.map((_, i) => i);
  [p[p.length - 2], p[p.length - 1]] = [p[p.length - 1], p[p.length - 2]];
  return ops.transpose(x, p);
};

/** Emission of a single ONNX node: the op's inputs, then constant inputs derived from the attributes. */
const node =
  <A>(opType: string, attrs?: (a: A) => Record<string, AttrValue>, extra?: (g: Graph, a: A) => Tensor[]) =>
  (g: Graph, ins: readonly Tensor[], a: A, outs: Spec[]) =>
    g.node(opType, [...ins, ...(extra?.(g, a) ?? [])], attrs?.(a) ?? {}, outs);

function binary(op: string): (ins: readonly Tensor[]) => Spec[] {
  return (ins) => {
    if (ins[0].dtype !== ins[1].dtype) fail(op, 'dtypes differ', ins);
    return [{ dtype: ins[0].dtype, shape: broadcastShapes(op, ins, [ins[0].shape, ins[1].shape]) }];
  };
}

const compare = (op: string) => (ins: readonly Tensor[]) => [{ ...binary(op)(ins)[0], dtype: 'bool' as DType }];
const same = (ins: readonly Tensor[]): Spec[] => [{ dtype: ins[0].dtype, shape: [...ins[0].shape] }];
const floatOnly = (op: string) => (ins: readonly Tensor[]) => (isFloat(ins[0].dtype) ? same(ins) : fail(op, 'needs a float tensor', ins));

interface ReduceAttrs {
  axes: number[];
  keepdims: boolean;
}
function reduceInfer(op: string) {
  return (ins: readonly Tensor[], a: ReduceAttrs): Spec[] => {
    const axes = a.axes.map((ax) => normAxis(ax, ins[0].shape.length));
    // ONNX reads empty axes as 'all axes': name them instead.
    if (!axes.length || axes.some((ax) => ax < 0 || ax >= ins[0].shape.length)) fail(op, `axes [${a.axes}] empty or out of range`, ins);
    const shape = ins[0].shape.flatMap((d, i) => (axes.includes(i) ? (a.keepdims ? [1] : []) : [d]));
    return [{ dtype: ins[0].dtype, shape }];
  };
}
const reduceEmit = (opType: string) =>
  node<ReduceAttrs>(opType, (a) => ({ keepdims: a.keepdims ? 1 : 0 }), (g, a) => [i64(g, a.axes)]);
/** The gradient of a reduction, broadcast back over the reduced axes. */
const spread = (grad: Tensor, x: Tensor, a: ReduceAttrs) => {
  const axes = a.axes.map((ax) => normAxis(ax, x.shape.length));
  return ops.expand(ops.reshape(grad, x.shape.map((d, i) => (axes.includes(i) ? 1 : d))), [...x.shape]);
};

/** One sliced axis, normalised with ONNX's clamping rules. */
interface SliceAxis {
  axis: number;
  start: number;
  step: number;
  count: number;
}
function normaliseSlice(x: Tensor, a: SliceAttrs): SliceAxis[] {
  return a.axes.map((ax, i) => {
    const axis = normAxis(ax, x.shape.length);
    const dim = x.shape[axis];
    const step = a.steps?.[i] ?? 1;
    if (step === 0 || dim === undefined) fail('slice', `bad axis ${ax} or step 0`, [x]);
    const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + dim : v, lo), hi);
    const start = step > 0 ? clamp(a.starts[i], 0, dim) : clamp(a.starts[i], 0, dim - 1);
    const end = step > 0 ? clamp(a.ends[i], 0, dim) : clamp(a.ends[i], -1, dim - 1);
    const count = Math.max(0, Math.ceil((end - start) / step));
    return { axis, start, step, count };
  });
}
interface SliceAttrs {
  starts: number[];
  ends: number[];
  axes: number[];
  steps?: number[];
}

/** Places the gradient of a strided slice back: append one zero slice, then Gather each source position. */
function unslice(grad: Tensor, x: Tensor, s: SliceAxis): Tensor {
  const zeroShape = grad.shape.map((d, i) => (i === s.axis ? 1 : d));
  const padded = ops.concat([grad, zeros({ shape: zeroShape, dtype: grad.dtype }, grad.graph)], s.axis);
  const index = Array.from({ length: x.shape[s.axis] }, (_, i) => {
    const k = (i - s.start) / s.step;
    return Number.isInteger(k) && k >= 0 && k < s.count ? k : s.count;
  });
  return ops.gather(padded, i64(grad.graph, index), s.axis);
}

const gatherShape = (x: Tensor, idx: Tensor, axis: number) => [
  ...x.shape.slice(0, axis),
  ...idx.shape,
  ...x.shape.slice(axis + 1),
];
const toInt64 = (t: Tensor) => (t.dtype === 'int64' ? t : ops.cast(t, 'int64'));

const SQRT2 = Math.SQRT2;
const QUICK = 1.702;

export const rules = {
  matmul: {
    infer(ins) {
      const [a, b] = ins;
      if (a.shape.length < 2 || b.shape.length < 2) fail('matmul', 'operands need rank >= 2', ins);
      if (a.dtype !== b.dtype) fail('matmul', 'dtypes differ', ins);
      const [m, k] = a.shape.slice(-2);
      const [k2, n] = b.shape.slice(-2);
      if (k !== k2) fail('matmul', `inner dimensions ${k} and ${k2} differ`, ins);
      const batch = broadcastShapes('matmul', ins, [a.shape.slice(0, -2), b.shape.slice(0, -2)]);
      return [{ dtype: a.dtype, shape: [...batch, m, n] }];
    },
    emit: node('MatMul'),
    vjp([a, b], _, [g], __, need) {
      const ga = need[0] ? unbroadcast(ops.matmul(g!, swapLast(b)), a.shape) : undefined;
      let gb: Tensor | undefined;
      if (need[1] && b.shape.length === 2 && a.shape.length > 2) {
        // A weight shared over a batch: one [k, B*m] x [B*m, n] product instead of a batched one plus a sum.
        const k = a.shape[a.shape.length - 1];
        gb = ops.matmul(ops.transpose(ops.reshape(a, [-1, k]), [1, 0]), ops.reshape(g!, [-1, b.shape[1]]));
      } else if (need[1]) gb = unbroadcast(ops.matmul(swapLast(a), g!), b.shape);
      return [ga, gb];
    },
  } satisfies Rule<NoAttrs>,

  add: {
    infer: binary('add'),
    emit: node('Add'),
    vjp: ([a, b], _, [g], __, need) => [need[0] ? unbroadcast(g!, a.shape) : undefined, need[1] ? unbroadcast(g!, b.shape) : undefined],
  } satisfies Rule<NoAttrs>,

  sub: {
    infer: binary('sub'),
    emit: node('Sub'),
    vjp: ([a, b], _, [g], __, need) => [
      need[0] ? unbroadcast(g!, a.shape) : undefined,
      need[1] ? unbroadcast(ops.neg(g!), b.shape) : undefined,
    ],
  } satisfies Rule<NoAttrs>,

  mul: {
    infer: binary('mul'),
    emit: node('Mul'),
    vjp: ([a, b], _, [g], __, need) => [
      need[0] ? unbroadcast(ops.mul(g!, b), a.shape) : undefined,
      need[1] ? unbroadcast(ops.mul(g!, a), b.shape) : undefined,
    ],
  } satisfies Rule<NoAttrs>,

  div: {
    infer: binary('div'),
    emit: node('Div'),
    vjp: ([a, b], [y], [g], __, need) => [
      need[0] ? unbroadcast(ops.div(g!, b), a.shape) : undefined,
      need[1] ? unbroadcast(ops.neg(ops.div(ops.mul(g!, y), b)), b.shape) : undefined,
    ],
  } satisfies Rule<NoAttrs>,

  maximum: {
    infer: binary('maximum'),
    emit: node('Max'),
    // Ties send the gradient to `a`.
    vjp([a, b], _, [g], __, need) {
      const bWins = ops.less(a, b);
      return [
        need[0] ? unbroadcast(ops.where(bWins, 0, g!), a.shape) : undefined,
        need[1] ? unbroadcast(ops.where(bWins, g!, 0), b.shape) : undefined,
      ];
    },
  } satisfies Rule<NoAttrs>,

  neg: { infer: same, emit: node('Neg'), vjp: (_, __, [g]) => [ops.neg(g!)] } satisfies Rule<NoAttrs>,
  exp: { infer: floatOnly('exp'), emit: node('Exp'), vjp: (_, [y], [g]) => [ops.mul(g!, y)] } satisfies Rule<NoAttrs>,
  log: { infer: floatOnly('log'), emit: node('Log'), vjp: ([x], _, [g]) => [ops.div(g!, x)] } satisfies Rule<NoAttrs>,
  sqrt: {
    infer: floatOnly('sqrt'),
    emit: node('Sqrt'),
    vjp: (_, [y], [g]) => [ops.div(g!, ops.mul(y, 2))],
  } satisfies Rule<NoAttrs>,

  pow: {
    infer: floatOnly('pow'),
    emit: (g, [x], a, outs) => g.node('Pow', [x, g.constant(a.p, [], x.dtype)], {}, outs),
    vjp: ([x], _, [g], a) => [ops.mul(g!, a.p === 2 ? ops.mul(x, 2) : ops.mul(ops.pow(x, a.p - 1), a.p))],
  } satisfies Rule<{ p: number }>,

  erf: {
    infer: floatOnly('erf'),
    emit: node('Erf'),
    vjp: ([x], _, [g]) => [ops.mul(g!, ops.mul(ops.exp(ops.neg(ops.mul(x, x))), 2 / Math.sqrt(Math.PI)))],
  } satisfies Rule<NoAttrs>,

  sigmoid: {
    infer: floatOnly('sigmoid'),
    emit: node('Sigmoid'),
    vjp: (_, [y], [g]) => [ops.mul(g!, ops.mul(y, ops.sub(1, y)))],
  } satisfies Rule<NoAttrs>,

  relu: {
    infer: floatOnly('relu'),
    emit: node('Relu'),
    vjp: ([x], _, [g]) => [ops.where(ops.greater(x, 0), g!, 0)],
  } satisfies Rule<NoAttrs>,

  gelu: {
    infer: floatOnly('gelu'),
    // x * 0.5 * (1 + erf(x / sqrt 2)), in the node order ORT's GeluFusion matches at level 'all'.
    emit(g, [x], _, [out]) {
      const c = (v: number) => g.constant(v, [], x.dtype);
      const [d] = g.node('Div', [x, c(SQRT2)], {}, [out]);
      const [e] = g.node('Erf', [d], {}, [out]);
      const [p] = g.node('Add', [e, c(1)], {}, [out]);
      const [m] = g.node('Mul', [x, p], {}, [out]);
      return g.node('Mul', [m, c(0.5)], {}, [out]);
    },
    // d/dx = Phi(x) + x phi(x). Phi is recomputed (Mul, not the forward's Div, so ORT's common-subexpression pass
    // does not merge it into the forward) and the forward stays one fused Gelu kernel at level 'all'.
    vjp([x], _, [g]) {
      const cdf = ops.mul(ops.add(ops.erf(ops.mul(x, Math.SQRT1_2)), 1), 0.5);
      const pdf = ops.mul(ops.exp(ops.mul(ops.mul(x, x), -0.5)), 1 / Math.sqrt(2 * Math.PI));
      return [ops.mul(g!, ops.add(cdf, ops.mul(x, pdf)))];
    },
  } satisfies Rule<NoAttrs>,

  quickGelu: {
    infer: floatOnly('quickGelu'),
    emit(g, [x], _, [out]) {
      const [s] = g.node('Sigmoid', [g.node('Mul', [x, g.constant(QUICK, [], x.dtype)], {}, [out])[0]], {}, [out]);
      return g.node('Mul', [x, s], {}, [out]);
    },
    // d/dx = s (1 + x (1.702 - 1.702 s)), s = sigmoid(1.702 x); like gelu, nothing here repeats a forward node.
    vjp([x], _, [g]) {
      const s = ops.sigmoid(ops.div(x, 1 / QUICK));
      return [ops.mul(g!, ops.mul(s, ops.add(ops.mul(x, ops.sub(QUICK, ops.mul(s, QUICK))), 1)))];
    },
  } satisfies Rule<NoAttrs>,

  layerNorm: {
    infer(ins) {
      const [x, w, b] = ins;
      const d = x.shape[x.shape.length - 1];
      if (!isFloat(x.dtype) || w.shape.length !== 1 || w.shape[0] !== d || !sameShape(b.shape, w.shape)) {
        fail('layerNorm', `weight and bias must be [${d}] of the input's float type`, ins);
      }
      const y = { dtype: x.dtype, shape: [...x.shape] };
      // Mean/InvStdDev are float32 whatever the input type: only a float32 LN can hand them to its VJP.
      if (x.dtype !== 'float32') return [y];
      const stat = { dtype: 'float32' as DType, shape: [...x.shape.slice(0, -1), 1] };
      return [y, stat, stat];
    },
    emit: node('LayerNormalization', (a) => ({ axis: -1, epsilon: floatAttr(a.eps) })),
    vjp([x, w], outs, [g], a, need) {
      let mean: Tensor;
      let rstd: Tensor;
      if (outs.length === 3) [, mean, rstd] = outs;
      else {
        mean = ops.reduceMean(x, [-1], true);
        const xc = ops.sub(x, mean);
        rstd = ops.div(1, ops.sqrt(ops.add(ops.reduceMean(ops.mul(xc, xc), [-1], true), a.eps)));
      }
      const xhat = ops.mul(ops.sub(x, mean), rstd);
      const lead = x.shape.slice(0, -1).map((_, i) => i);
      let gx: Tensor | undefined;
      if (need[0]) {
        const gh = ops.mul(g!, w);
        const centred = ops.sub(gh, ops.reduceMean(gh, [-1], true));
        gx = ops.mul(rstd, ops.sub(centred, ops.mul(xhat, ops.reduceMean(ops.mul(gh, xhat), [-1], true))));
      }
      const sumLead = (t: Tensor) => (lead.length ? ops.reduceSum(t, lead) : t);
      return [gx, need[1] ? sumLead(ops.mul(g!, xhat)) : undefined, need[2] ? sumLead(g!) : undefined];
    },
  } satisfies Rule<{ eps: number }>,

  softmax: {
    infer: floatOnly('softmax'),
    emit: node('Softmax', (a) => ({ axis: a.axis })),
    vjp: (_, [y], [g], a) => [ops.mul(y, ops.sub(g!, ops.reduceSum(ops.mul(g!, y), [a.axis], true)))],
  } satisfies Rule<{ axis: number }>,

  logSoftmax: {
    infer: floatOnly('logSoftmax'),
    emit: node('LogSoftmax', (a) => ({ axis: a.axis })),
    vjp: (_, [y], [g], a) => [ops.sub(g!, ops.mul(ops.exp(y), ops.reduceSum(g!, [a.axis], true)))],
  } satisfies Rule<{ axis: number }>,

  reshape: {
    infer(ins, a) {
      const n = numel(ins[0].shape);
      const known = numel(a.shape.filter((d) => d !== -1));
      const shape = a.shape.map((d) => (d === -1 ? n / known : d));
      if (a.shape.filter((d) => d === -1).length > 1 || numel(shape) !== n || !shape.every(Number.isInteger)) {
        fail('reshape', `cannot reshape to [${a.shape}]`, ins);
      }
      return [{ dtype: ins[0].dtype, shape }];
    },
    emit: (g, [x], _, outs) => g.node('Reshape', [x, i64(g, outs[0].shape)], {}, outs),
    vjp: ([x], _, [g]) => [ops.reshape(g!, [...x.shape])],
  } satisfies Rule<{ shape: number[] }>,

  transpose: {
    infer(ins, a) {
      const r = ins[0].shape.length;
      if (a.perm.length !== r || [...a.perm].sort().some((p, i) => p !== i)) fail('transpose', `bad perm [${a.perm}]`, ins);
      return [{ dtype: ins[0].dtype, shape: a.perm.map((p) => ins[0].shape[p]) }];
    },
    emit: node('Transpose', (a) => ({ perm: a.perm })),
    vjp(_, __, [g], a) {
      const inv: number[] = [];
      a.perm.forEach((p, i) => (inv[p] = i));
      return [ops.transpose(g!, inv)];
    },
  } satisfies Rule<{ perm: number[] }>,

  concat: {
    infer(ins, a) {
      const axis = normAxis(a.axis, ins[0].shape.length);
      const ok = ins.every(
        (t) => t.dtype === ins[0].dtype && t.shape.length === ins[0].shape.length && t.shape.every((d, i) => i === axis || d === ins[0].shape[i]),
      );
      if (!ok || axis < 0 || axis >= ins[0].shape.length) fail('concat', `operands do not match along axis ${a.axis}`, ins);
      const shape = [...ins[0].shape];
      shape[axis] = ins.reduce((s, t) => s + t.shape[axis], 0);
      return [{ dtype: ins[0].dtype, shape }];
    },
    emit: node('Concat', (a) => ({ axis: a.axis })),
    vjp(ins, _, [g], a, need) {
      const axis = normAxis(a.axis, g!.shape.length);
      const parts = ops.split(g!, ins.map((t) => t.shape[axis]), axis);
      return parts.map((p, i) => (need[i] ? p : undefined));
    },
  } satisfies Rule<{ axis: number }>,

  split: {
    infer(ins, a) {
      const axis = normAxis(a.axis, ins[0].shape.length);
      if (a.sizes.reduce((x, y) => x + y, 0) !== ins[0].shape[axis]) fail('split', `sizes [${a.sizes}] do not sum to axis ${a.axis}`, ins);
      return a.sizes.map((s) => ({ dtype: ins[0].dtype, shape: ins[0].shape.map((d, i) => (i === axis ? s : d)) }));
    },
    emit: node('Split', (a) => ({ axis: a.axis }), (g, a) => [i64(g, a.sizes)]),
    vjp: (_, outs, grads, a) => [ops.concat(outs.map((o, i) => grads[i] ?? zeros(o, o.graph)), a.axis)],
  } satisfies Rule<{ sizes: number[]; axis: number }>,

  slice: {
    infer(ins, a) {
      const shape = [...ins[0].shape];
      for (const s of normaliseSlice(ins[0], a)) shape[s.axis] = s.count;
      return [{ dtype: ins[0].dtype, shape }];
    },
    emit: node<SliceAttrs>('Slice', undefined, (g, a) => [
      i64(g, a.starts),
      i64(g, a.ends),
      i64(g, a.axes),
      i64(g, a.steps ?? a.axes.map(() => 1)),
    ]),
    vjp: ([x], _, [g], a) => [normaliseSlice(x, a).reduceRight((acc, s) => unslice(acc, x, s), g!)],
  } satisfies Rule<SliceAttrs>,

  gather: {
    infer(ins, a) {
      const axis = normAxis(a.axis, ins[0].shape.length);
      if (ins[1].dtype !== 'int64' && ins[1].dtype !== 'int32') fail('gather', 'indices must be int64 or int32', ins);
      return [{ dtype: ins[0].dtype, shape: gatherShape(ins[0], ins[1], axis) }];
    },
    emit: node('Gather', (a) => ({ axis: a.axis })),
    // Scatter-add into zeros: duplicate indices (repeated tokens) accumulate. ScatterElements, not ScatterND:
    // onnxruntime's multi-threaded ScatterND-add sums duplicates in a varying order (results differ run to run,
    // which breaks bit-identical resume), while its ScatterElements-add is sequential.
    vjp([x, idx], _, [g], a) {
      const axis = normAxis(a.axis, x.shape.length);
      const gr = g!.graph;
      const base = zeros(x, gr);
      const k = numel(idx.shape);
      const flatShape = [...x.shape.slice(0, axis), k, ...x.shape.slice(axis + 1)];
      const idxShape = x.shape.map((_, i) => (i === axis ? k : 1));
      const where = ops.expand(ops.reshape(toInt64(idx), idxShape), flatShape);
      return [gr.node('ScatterElements', [base, where, ops.reshape(g!, flatShape)], { axis, reduction: 'add' }, [x])[0], undefined];
    },
  } satisfies Rule<{ axis: number }>,

  gatherElements: {
    infer(ins, a) {
      if (ins[0].shape.length !== ins[1].shape.length) fail('gatherElements', 'indices must have the input rank', ins);
      normAxis(a.axis, ins[0].shape.length);
      return [{ dtype: ins[0].dtype, shape: [...ins[1].shape] }];
    },
    emit: node('GatherElements', (a) => ({ axis: a.axis })),
    vjp([x, idx], _, [g], a) {
      const gr = g!.graph;
      return [gr.node('ScatterElements', [zeros(x, gr), idx, g!], { axis: a.axis, reduction: 'add' }, [x])[0], undefined];
    },
  } satisfies Rule<{ axis: number }>,

  expand: {
    infer: (ins, a) => [{ dtype: ins[0].dtype, shape: broadcastShapes('expand', ins, [ins[0].shape, a.shape]) }],
    emit: node('Expand', undefined, (g, a) => [i64(g, a.shape)]),
    vjp: ([x], _, [g]) => [unbroadcast(g!, x.shape)],
  } satisfies Rule<{ shape: number[] }>,

  reduceSum: {
    infer: reduceInfer('reduceSum'),
    emit: reduceEmit('ReduceSum'),
    vjp: ([x], _, [g], a) => [spread(g!, x, a)],
  } satisfies Rule<ReduceAttrs>,

  reduceMean: {
    infer: reduceInfer('reduceMean'),
    emit: reduceEmit('ReduceMean'),
    vjp: ([x], [y], [g], a) => [spread(ops.div(g!, numel(x.shape) / numel(y.shape)), x, a)],
  } satisfies Rule<ReduceAttrs>,

  reduceMax: { infer: reduceInfer('reduceMax'), emit: reduceEmit('ReduceMax') } satisfies Rule<ReduceAttrs>,

  where: {
    infer(ins) {
      const [c, a, b] = ins;
      if (c.dtype !== 'bool' || a.dtype !== b.dtype) fail('where', 'needs a bool condition and operands of one dtype', ins);
      return [{ dtype: a.dtype, shape: broadcastShapes('where', ins, ins.map((t) => t.shape)) }];
    },
    emit: node('Where'),
    vjp: ([c, a, b], _, [g], __, need) => [
      undefined,
      need[1] ? unbroadcast(ops.where(c, g!, 0), a.shape) : undefined,
      need[2] ? unbroadcast(ops.where(c, 0, g!), b.shape) : undefined,
    ],
  } satisfies Rule<NoAttrs>,

  argmax: {
    infer: (ins, a) => [{ ...reduceInfer('argmax')(ins, { axes: [a.axis], keepdims: a.keepdims })[0], dtype: 'int64' }],
    emit: node('ArgMax', (a) => ({ axis: a.axis, keepdims: a.keepdims ? 1 : 0 })),
  } satisfies Rule<{ axis: number; keepdims: boolean }>,

  equal: { infer: compare('equal'), emit: node('Equal') } satisfies Rule<NoAttrs>,
  greater: { infer: compare('greater'), emit: node('Greater') } satisfies Rule<NoAttrs>,
  less: { infer: compare('less'), emit: node('Less') } satisfies Rule<NoAttrs>,

  cast: {
    infer: (ins, a) => [{ dtype: a.to, shape: [...ins[0].shape] }],
    emit: (g, [x], a, outs) => g.node('Cast', [x], { to: ONNX_TYPE[a.to] }, outs),
    vjp: ([x], _, [g], a) => [isFloat(x.dtype) && isFloat(a.to) ? ops.cast(g!, x.dtype) : undefined],
  } satisfies Rule<{ to: DType }>,

  clip: {
    infer: floatOnly('clip'),
    emit: (g, [x], a, outs) => {
      const c = (v?: number) => (v === undefined ? undefined : g.constant(v, [], x.dtype));
      return g.node('Clip', [x, c(a.min), c(a.max)], {}, outs);
    },
    vjp([x], _, [g], a) {
      let gx = g!;
      if (a.min !== undefined) gx = ops.where(ops.less(x, a.min), 0, gx);
      if (a.max !== undefined) gx = ops.where(ops.greater(x, a.max), 0, gx);
      return [gx];
    },
  } satisfies Rule<{ min?: number; max?: number }>,

  identity: { infer: same, emit: node('Identity'), vjp: (_, __, [g]) => [g] } satisfies Rule<NoAttrs>,

  squeeze: {
    infer(ins, a) {
      const axes = a.axes.map((ax) => normAxis(ax, ins[0].shape.length));
      if (axes.some((ax) => ins[0].shape[ax] !== 1)) fail('squeeze', `axes [${a.axes}] are not 1`, ins);
      return [{ dtype: ins[0].dtype, shape: ins[0].shape.filter((_, i) => !axes.includes(i)) }];
    },
    emit: node('Squeeze', undefined, (g, a) => [i64(g, a.axes)]),
    vjp: ([x], _, [g]) => [ops.reshape(g!, [...x.shape])],
  } satisfies Rule<{ axes: number[] }>,

  unsqueeze: {
    infer(ins, a) {
      const rank = ins[0].shape.length + a.axes.length;
      const axes = a.axes.map((ax) => normAxis(ax, rank));
      const rest = [...ins[0].shape];
      return [{ dtype: ins[0].dtype, shape: Array.from({ length: rank }, (_, i) => (axes.includes(i) ? 1 : rest.shift()!)) }];
    },
    emit: node('Unsqueeze', undefined, (g, a) => [i64(g, a.axes)]),
    vjp: ([x], _, [g]) => [ops.reshape(g!, [...x.shape])],
  } satisfies Rule<{ axes: number[] }>,
};
