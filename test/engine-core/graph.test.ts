import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gradients } from '../../worker/engine/autodiff.ts';
import { Graph } from '../../worker/engine/graph.ts';
import * as op from '../../worker/engine/ops.ts';
import { runOnce } from '../../worker/engine/session.ts';
import { random } from './gradcheck.ts';

/** y = relu(x W + b) W2, in plain JS. */
function mlpReference(x: Float32Array, w: Float32Array, b: Float32Array, w2: Float32Array, n: number, d: number, h: number, o: number) {
  const y = new Float32Array(n * o);
  for (let r = 0; r < n; r++) {
    const hidden = Array.from({ length: h }, (_, j) => {
      let s = b[j];
      for (let k = 0; k < d; k++) s += x[r * d + k] * w[k * h + j];
      return Math.max(0, s);
    });
    for (let c = 0; c < o; c++) y[r * o + c] = hidden.reduce((s, v, j) => s + v * w2[j * o + c], 0);
  }
  return y;
}

/** The length-delimited fields of one protobuf message, by field number (enough to walk ModelProto/GraphProto). */
function fields(bytes: Uint8Array): Map<number, Uint8Array[]> {
  const out = new Map<number, Uint8Array[]>();
  let at = 0;
  const varint = () => {
    let v = 0;
    for (let shift = 1; ; shift *= 128) {
      const b = bytes[at++];
      v += (b & 0x7f) * shift;
      if (b < 0x80) return v;
    }
  };
  while (at < bytes.length) {
    const key = varint();
    const wire = key % 8;
    if (wire === 0) varint();
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const len = varint();
      const list = out.get(Math.floor(key / 8)) ?? [];
      list.push(bytes.subarray(at, at + len));
      out.set(Math.floor(key / 8), list);
      at += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'engine-core-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('Graph.toModel', () => {
  const [n, d, h, o] = [3, 4, 5, 2];
  const rnd = random(7);
  const fill = (len: number) => Float32Array.from({ length: len }, rnd);
  const x = fill(n * d);
  const w = fill(d * h);
  const b = fill(h);
  const w2 = fill(h * o);

  const build = () => {
    const g = new Graph({ name: 'mlp' });
    const xin = g.input('x', 'float32', [n, d]);
    const hidden = op.relu(op.add(op.matmul(xin, g.initializer('w', w, [d, h])), g.initializer('b', b, [h])));
    g.output(op.matmul(hidden, g.initializer('w2', w2, [h, o])), 'y');
    return g;
  };

  it('emits a model with weights inside that onnxruntime runs like a JS reference', async () => {
    const out = await runOnce(build().toModel(), { x: { data: x, dims: [n, d] } });
    expect(out.y.dims).toEqual([n, o]);
    const ref = mlpReference(x, w, b, w2, n, d, h, o);
    const got = out.y.data as Float32Array;
    ref.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
  });

  it('moves large initializers to an external data file when asked', async () => {
    const g = new Graph();
    const big = Float32Array.from({ length: 600 }, (_, i) => i / 100);
    const xin = g.input('x', 'float32', [1, 600]);
    g.output(op.reduceSum(op.mul(xin, g.initializer('big', big, [1, 600])), [1]), 's');
    const inline = g.toModel();
    const modelPath = join(tmp, 'ext.onnx');
    const external = g.toModel({ externalData: join(tmp, 'ext.onnx.data') });
    writeFileSync(modelPath, external);
    expect(statSync(join(tmp, 'ext.onnx.data')).size).toBe(600 * 4);
    expect(external.length).toBeLessThan(inline.length - 2000);
    const ones = new Float32Array(600).fill(1);
    const out = await runOnce(modelPath, { x: { data: ones, dims: [1, 600] } });
    expect((out.s.data as Float32Array)[0]).toBeCloseTo(big.reduce((a, v) => a + v, 0), 1);
  });

  it('encodes a graph of 20,000 nodes', () => {
    const g = new Graph();
    let y = g.input('x', 'float32', [1]);
    for (let i = 0; i < 20_000; i++) [y] = g.node('Neg', [y], {}, [{ dtype: 'float32', shape: [1] }]);
    g.output(y, 'y');
    const graph = fields(fields(g.toModel()).get(7)![0]);
    const nodes = graph.get(1)!;
    expect(nodes.length).toBe(20_000);
    expect(new TextDecoder().decode(fields(nodes[nodes.length - 1]).get(2)![0])).toBe('y');
  });

  it('emits outputs under their final names without Identity copies', () => {
    const g = new Graph();
    const xin = g.input('x', 'float32', [2]);
    const y = op.exp(xin);
    g.output(y, 'y');
    g.output(y, 'y_again');
    g.output(xin, 'x_out');
    const nodes = g.proto().nodes;
    expect(y.name).toBe('y');
    expect(nodes.map((nd) => nd.opType)).toEqual(['Exp', 'Identity', 'Identity']);
    expect(nodes[0].outputs).toEqual(['y']);
  });

  it('rejects duplicate names, mismatched shapes and foreign tensors with clear errors', () => {
    const g = new Graph();
    const a = g.input('p', 'float32', [2, 3]);
    expect(() => g.input('p', 'float32', [1])).toThrow(/"p" is already defined/);
    expect(() => op.matmul(a, a)).toThrow(/matmul: inner dimensions 3 and 2 differ/);
    expect(() => op.add(a, g.input('q', 'float32', [4]))).toThrow(/add: shapes do not broadcast/);
    expect(() => op.add(a, new Graph().input('r', 'float32', [3]))).toThrow(/unrelated graphs/);
    expect(() => op.reshape(a, [4, -1])).toThrow(/cannot reshape/);
    expect(() => op.reduceSum(a, [])).toThrow(/reduceSum: axes \[\] empty or out of range/);
    expect(() => new Graph({ opset: 17 })).toThrow(/opset 17 is outside 18..26/);
  });

  it('shares small constants by value', () => {
    const g = new Graph();
    expect(g.constant(2)).toBe(g.constant(2));
    expect(g.constant([1, 2], [2], 'int64')).not.toBe(g.constant([1, 2], [2]));
    expect(g.constant(3, [2, 2]).shape).toEqual([2, 2]);
  });

  it('returns undefined gradients for inputs that do not reach the loss', () => {
    const g = new Graph({ dtype: 'float64' });
    const a = g.input('a', 'float64', [3]);
    const unused = g.input('u', 'float64', [3]);
    const idx = g.input('i', 'int64', [2]);
    const loss = op.reduceSum(op.gather(op.mul(a, a), idx), [0]);
    const [ga, gu, gi] = gradients(loss, [a, unused, idx]);
    expect(ga?.shape).toEqual([3]);
    expect(gu).toBeUndefined();
    expect(gi).toBeUndefined();
  });
});
