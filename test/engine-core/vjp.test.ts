import { describe, expect, it } from 'vitest';
import type { Tensor } from '../../worker/engine/graph.ts';
import * as op from '../../worker/engine/ops.ts';
import { gradcheck, type InputSpec } from './gradcheck.ts';

/** Values bounded away from zero (kinks, logs, square roots, divisions). */
const positive = (n: number, from = 0.3) => Array.from({ length: n }, (_, i) => from + ((i * 0.37) % 1.1));
const awayFromZero = (n: number) => Array.from({ length: n }, (_, i) => (i % 2 ? 1 : -1) * (0.1 + ((i * 0.29) % 0.8)));

interface Case {
  name: string;
  inputs: InputSpec[];
  f: (...xs: Tensor[]) => Tensor | Tensor[];
  dtype?: 'float32' | 'float64';
}

const F64_TOL = 1e-7;
const F32_TOL = 1e-3;

const cases: Case[] = [
  { name: 'matmul 2D x 2D', inputs: [{ shape: [2, 3] }, { shape: [3, 4] }], f: op.matmul },
  { name: 'matmul 3D x 2D weight', inputs: [{ shape: [2, 3, 4] }, { shape: [4, 5] }], f: op.matmul },
  { name: 'matmul batch broadcast', inputs: [{ shape: [2, 1, 2, 3] }, { shape: [3, 3, 2] }], f: op.matmul },
  { name: 'add [2,1,3] + [3]', inputs: [{ shape: [2, 1, 3] }, { shape: [3] }], f: op.add },
  { name: 'add [2,1,3] + [4,1]', inputs: [{ shape: [2, 1, 3] }, { shape: [4, 1] }], f: op.add },
  { name: 'sub [3] - [2,1,3]', inputs: [{ shape: [3] }, { shape: [2, 1, 3] }], f: op.sub },
  { name: 'mul [2,3] * [2,1]', inputs: [{ shape: [2, 3] }, { shape: [2, 1] }], f: op.mul },
  { name: 'mul by a number', inputs: [{ shape: [2, 3] }], f: (x) => op.mul(op.sub(1, x), 3) },
  { name: 'div [2,3] / [3]', inputs: [{ shape: [2, 3] }, { shape: [3], values: positive(3) }], f: op.div },
  { name: 'maximum [2,3] vs [3]', inputs: [{ shape: [2, 3], values: awayFromZero(6) }, { shape: [3], values: [0.05, -0.5, 0.33] }], f: op.maximum },
  { name: 'neg', inputs: [{ shape: [4] }], f: op.neg },
  { name: 'exp', inputs: [{ shape: [2, 3] }], f: op.exp },
  { name: 'log', inputs: [{ shape: [5], values: positive(5) }], f: op.log },
  { name: 'sqrt', inputs: [{ shape: [5], values: positive(5) }], f: op.sqrt },
  { name: 'pow 3', inputs: [{ shape: [5] }], f: (x) => op.pow(x, 3) },
  { name: 'pow 2', inputs: [{ shape: [5] }], f: (x) => op.pow(x, 2) },
  { name: 'pow 0.5', inputs: [{ shape: [5], values: positive(5) }], f: (x) => op.pow(x, 0.5) },
  { name: 'sigmoid', inputs: [{ shape: [2, 3] }], f: op.sigmoid },
  { name: 'relu', inputs: [{ shape: [6], values: awayFromZero(6) }], f: op.relu },
  { name: 'quickGelu', inputs: [{ shape: [2, 4], values: [-3, -1.2, -0.4, 0.1, 0.5, 1, 2.2, 4] }], f: op.quickGelu },
  // Erf has no float64 kernel on the CPU EP: these two are checked in float32.
  { name: 'erf (f32)', inputs: [{ shape: [6], values: [-2, -0.7, -0.1, 0.2, 0.9, 1.8] }], f: op.erf, dtype: 'float32' },
  { name: 'gelu (f32)', inputs: [{ shape: [2, 4], values: [-4, -1.5, -0.5, -0.05, 0.3, 0.8, 1.7, 5] }], f: op.gelu, dtype: 'float32' },
  { name: 'layerNorm (f64: recomputed statistics)', inputs: [{ shape: [2, 3, 5] }, { shape: [5] }, { shape: [5] }], f: (x, w, b) => op.layerNorm(x, w, b) },
  { name: 'layerNorm (f32: Mean/InvStdDev outputs)', inputs: [{ shape: [3, 4] }, { shape: [4] }, { shape: [4] }], f: (x, w, b) => op.layerNorm(x, w, b, 1e-3), dtype: 'float32' },
  { name: 'softmax last axis', inputs: [{ shape: [2, 4] }], f: (x) => op.softmax(x) },
  { name: 'softmax axis 0', inputs: [{ shape: [3, 2] }], f: (x) => op.softmax(x, 0) },
  { name: 'logSoftmax', inputs: [{ shape: [2, 4] }], f: (x) => op.logSoftmax(x, 1) },
  { name: 'reshape with -1', inputs: [{ shape: [2, 3, 2] }], f: (x) => op.mul(op.reshape(x, [3, -1]), op.reshape(x, [3, 4])) },
  { name: 'transpose', inputs: [{ shape: [2, 3, 4] }], f: (x) => op.transpose(x, [2, 0, 1]) },
  { name: 'concat', inputs: [{ shape: [2, 1, 2] }, { shape: [2, 3, 2] }, { shape: [2, 2, 2] }], f: (a, b, c) => op.concat([a, b, c], 1) },
  { name: 'split (one part unused)', inputs: [{ shape: [2, 6] }], f: (x) => { const [a, , c] = op.split(x, [1, 2, 3], 1); return [a, op.mul(c, c)]; } },
  { name: 'slice step 1', inputs: [{ shape: [4, 5] }], f: (x) => op.slice(x, [1, -4], [3, 100], [0, 1]) },
  { name: 'slice step 2 and negative step', inputs: [{ shape: [5, 6] }], f: (x) => op.slice(x, [-1, 0], [-Infinity, Infinity], [0, 1], [-2, 2]) },
  { name: 'gather embedding, duplicate indices', inputs: [{ shape: [5, 3] }, { shape: [2, 3], dtype: 'int64', values: [0, 2, 2, 4, 0, 2] }], f: (w, i) => op.gather(w, i) },
  { name: 'gather axis 1, int32 duplicates, negative index', inputs: [{ shape: [2, 4, 3] }, { shape: [3], dtype: 'int32', values: [3, -3, 3] }], f: (x, i) => op.gather(x, i, 1) },
  { name: 'gatherElements duplicates', inputs: [{ shape: [3, 4] }, { shape: [3, 2], dtype: 'int64', values: [0, 0, 3, 1, 2, 2] }], f: (x, i) => op.gatherElements(x, i, 1) },
  { name: 'where with broadcast', inputs: [{ shape: [2, 3], dtype: 'bool', values: [1, 0, 1, 0, 0, 1] }, { shape: [3] }, { shape: [2, 1] }], f: op.where },
  { name: 'reduceSum', inputs: [{ shape: [2, 3, 4] }], f: (x) => op.reduceSum(x, [0, 2]) },
  { name: 'reduceSum keepdims', inputs: [{ shape: [2, 3, 4] }], f: (x) => op.reduceSum(x, [-1], true) },
  { name: 'reduceMean', inputs: [{ shape: [2, 3, 4] }], f: (x) => op.reduceMean(x, [1]) },
  { name: 'reduceMean keepdims', inputs: [{ shape: [3, 4] }], f: (x) => op.mul(op.reduceMean(x, [0, 1], true), x) },
  { name: 'expand', inputs: [{ shape: [3, 1] }], f: (x) => op.expand(x, [2, 3, 4]) },
  { name: 'cast f32 -> f64 -> f32', inputs: [{ shape: [4] }], f: (x) => op.cast(op.mul(op.cast(x, 'float64'), 2), 'float32'), dtype: 'float32' },
  { name: 'clip', inputs: [{ shape: [6], values: [-0.9, -0.3, 0.1, 0.4, 0.7, -0.6] }], f: (x) => op.clip(x, -0.5, 0.5) },
  { name: 'identity, squeeze, unsqueeze', inputs: [{ shape: [2, 1, 3] }], f: (x) => op.unsqueeze(op.squeeze(op.identity(x), [1]), [0, -1]) },
  { name: 'a tensor used twice', inputs: [{ shape: [3] }], f: (x) => op.mul(op.exp(x), x) },
];

describe('every VJP in the op table matches central finite differences', () => {
  it.each(cases)('$name', async ({ inputs, f, dtype }) => {
    const r = await gradcheck(inputs, f, { dtype });
    expect(r.missing).toEqual([]);
    expect(r.checked).toBeGreaterThan(0);
    expect(r.maxError).toBeLessThan(dtype === 'float32' ? F32_TOL : F64_TOL);
  });
});
