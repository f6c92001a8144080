/**
 * Differentiable ops as free functions. Each one applies ONE entry of the op table (rules.ts) and records it on
 * the tape. Numbers are accepted wherever a tensor operand is and become constants of the other operand's dtype.
 * An op emits into the innermost graph among its operands (a Loop body reading outer tensors emits into the body).
 */
import type { DType, Graph, Tensor } from './graph.ts';
import { rules, type Rule } from './rules.ts';

export type Operand = Tensor | number;

function innermost(op: string, ts: readonly Tensor[]): Graph {
  const g = ts.reduce((a, t) => (t.graph.depth > a.depth ? t.graph : a), ts[0].graph);
  for (const t of ts) if (!g.sees(t)) throw new Error(`${op}: operands ${ts.map(String).join(', ')} come from unrelated graphs`);
  return g;
}

/** Numbers become scalar constants of the first non-bool tensor operand's dtype. */
function lift(op: string, xs: readonly Operand[]): Tensor[] {
  const tensors = xs.filter((x): x is Tensor => typeof x !== 'number');
  if (!tensors.length) throw new Error(`${op}: needs at least one tensor operand`);
  const g = innermost(op, tensors);
  const dtype = (tensors.find((t) => t.dtype !== 'bool') ?? tensors[0]).dtype;
  return xs.map((x) => (typeof x === 'number' ? g.constant(x, [], dtype) : x));
}

export function apply<A>(op: string, rule: Rule<A>, operands: readonly Operand[], a: A): Tensor[] {
  const ins = lift(op, operands);
  const g = innermost(op, ins);
  const outs = rule.emit(g, ins, a, rule.infer(ins, a));
  const { vjp } = rule;
  if (vjp) g.record({ inputs: ins, outputs: outs, vjp: (grads, need) => vjp(ins, outs, grads, a, need) });
  return outs;
}

const one = <A>(op: keyof typeof rules & string, operands: readonly Operand[], a: A): Tensor =>
  apply(op, (rules as Record<string, Rule<unknown>>)[op] as Rule<A>, operands, a)[0];
const none = {};

export const matmul = (a: Operand, b: Operand): Tensor => one('matmul', [a, b], none);
export const add = (a: Operand, b: Operand): Tensor => one('add', [a, b], none);
export const sub = (a: Operand, b: Operand): Tensor => one('sub', [a, b], none);
export const mul = (a: Operand, b: Operand): Tensor => one('mul', [a, b], none);
export const div = (a: Operand, b: Operand): Tensor => one('div', [a, b], none);
export const maximum = (a: Operand, b: Operand): Tensor => one('maximum', [a, b], none);
export const neg = (x: Tensor): Tensor => one('neg', [x], none);
export const exp = (x: Tensor): Tensor => one('exp', [x], none);
export const log = (x: Tensor): Tensor => one('log', [x], none);
export const sqrt = (x: Tensor): Tensor => one('sqrt', [x], none);
export const pow = (x: Tensor, p: number): Tensor => one('pow', [x], { p });
export const erf = (x: Tensor): Tensor => one('erf', [x], none);
export const sigmoid = (x: Tensor): Tensor => one('sigmoid', [x], none);
export const relu = (x: Tensor): Tensor => one('relu', [x], none);
/** Exact GELU, x * Phi(x) with erf (float32 only on ORT's CPU EP: Erf has no double kernel). */
export const gelu = (x: Tensor): Tensor => one('gelu', [x], none);
/** x * sigmoid(1.702 x), open_clip's QuickGELU. */
export const quickGelu = (x: Tensor): Tensor => one('quickGelu', [x], none);
/** LayerNorm over the last axis with weight and bias of that size. */
export const layerNorm = (x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor => one('layerNorm', [x, weight, bias], { eps });
export const softmax = (x: Tensor, axis = -1): Tensor => one('softmax', [x], { axis });
export const logSoftmax = (x: Tensor, axis = -1): Tensor => one('logSoftmax', [x], { axis });
/** One dimension may be -1 (inferred). */
export const reshape = (x: Tensor, shape: number[]): Tensor => one('reshape', [x], { shape });
export const transpose = (x: Tensor, perm: number[]): Tensor => one('transpose', [x], { perm });
export const concat = (xs: Tensor[], axis: number): Tensor => one('concat', xs, { axis });
export const split = (x: Tensor, sizes: number[], axis: number): Tensor[] => apply('split', rules.split, [x], { sizes, axis });
/** ONNX Slice semantics (negative indices, clamping, negative steps). */
export const slice = (x: Tensor, starts: number[], ends: number[], axes: number[], steps?: number[]): Tensor =>
  one('slice', [x], { starts, ends, axes, steps });
/** Embedding lookup when axis = 0; the gradient scatter-adds, so repeated indices accumulate. */
export const gather = (x: Tensor, indices: Tensor, axis = 0): Tensor => one('gather', [x, indices], { axis });
export const gatherElements = (x: Tensor, indices: Tensor, axis: number): Tensor => one('gatherElements', [x, indices], { axis });
export const expand = (x: Tensor, shape: number[]): Tensor => one('expand', [x], { shape });
export const reduceSum = (x: Tensor, axes: number[], keepdims = false): Tensor => one('reduceSum', [x], { axes, keepdims });
export const reduceMean = (x: Tensor, axes: number[], keepdims = false): Tensor => one('reduceMean', [x], { axes, keepdims });
/** Not differentiable. */
export const reduceMax = (x: Tensor, axes: number[], keepdims = false): Tensor => one('reduceMax', [x], { axes, keepdims });
export const where = (cond: Tensor, a: Operand, b: Operand): Tensor => one('where', [cond, a, b], none);
/** Not differentiable; int64 result. */
export const argmax = (x: Tensor, axis: number, keepdims = false): Tensor => one('argmax', [x], { axis, keepdims });
/** Comparisons are not differentiable; bool results. */
export const equal = (a: Operand, b: Operand): Tensor => one('equal', [a, b], none);
export const greater = (a: Operand, b: Operand): Tensor => one('greater', [a, b], none);
export const less = (a: Operand, b: Operand): Tensor => one('less', [a, b], none);
export const cast = (x: Tensor, dtype: DType): Tensor => one('cast', [x], { to: dtype });
export const clip = (x: Tensor, min?: number, max?: number): Tensor => one('clip', [x], { min, max });
export const identity = (x: Tensor): Tensor => one('identity', [x], none);
export const squeeze = (x: Tensor, axes: number[]): Tensor => one('squeeze', [x], { axes });
/** `axes` index the output. */
export const unsqueeze = (x: Tensor, axes: number[]): Tensor => one('unsqueeze', [x], { axes });
