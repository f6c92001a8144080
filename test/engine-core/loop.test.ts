import { describe, expect, it } from 'vitest';
import { gradients } from '../../worker/engine/autodiff.ts';
import { Graph, type Tensor } from '../../worker/engine/graph.ts';
import * as op from '../../worker/engine/ops.ts';
import { openSession } from '../../worker/engine/session.ts';
import { random } from './gradcheck.ts';

const [K, N, D] = [5, 2, 3];

/** One step: x <- sigmoid(x W + b_t); also reports sum(x) per step. W is read from the enclosing scope. */
const step = (x: Tensor, w: Tensor, bt: Tensor) => {
  const next = op.sigmoid(op.add(op.matmul(x, w), bt));
  return { next, total: op.reduceSum(next, [0, 1]) };
};

describe('ONNX Loop through the graph builder', () => {
  it('K iterations equal K sequential single-step runs', async () => {
    const rnd = random(3);
    const fill = (n: number) => Float32Array.from({ length: n }, rnd);
    const x0 = fill(N * D);
    const w = fill(D * D);
    const b = fill(K * D);

    const single = new Graph({ name: 'single' });
    const s = step(single.input('x', 'float32', [N, D]), single.input('w', 'float32', [D, D]), single.input('b', 'float32', [D]));
    single.output(s.next, 'x_next');
    single.output(s.total, 'total');

    // Raw Loop node with a hand-built body, as the trainer's multi-step graph builds it.
    const looped = new Graph({ name: 'looped' });
    const xin = looped.input('x', 'float32', [N, D]);
    const win = looped.input('w', 'float32', [D, D]);
    const bin = looped.input('b', 'float32', [K, D]);
    const body = looped.subgraph('body');
    const iter = body.input('iter', 'int64', []);
    const cond = body.input('cond', 'bool', []);
    const carried = body.input('x_carried', 'float32', [N, D]);
    const inner = step(carried, win, op.gather(bin, iter, 0));
    body.output(cond, 'cond_out');
    body.output(inner.next, 'x_body');
    body.output(inner.total, 'total_body');
    const trips = looped.constant(BigInt64Array.of(BigInt(K)), []);
    const [xK, totals] = looped.node('Loop', [trips, undefined, xin], { body }, [
      { dtype: 'float32', shape: [N, D] },
      { dtype: 'float32', shape: [K] },
    ]);
    looped.output(xK, 'x_final');
    looped.output(totals, 'totals');

    // The same through the loop() helper.
    const helped = new Graph({ name: 'helped' });
    const hx = helped.input('x', 'float32', [N, D]);
    const hw = helped.input('w', 'float32', [D, D]);
    const hb = helped.input('b', 'float32', [K, D]);
    const r = helped.loop(K, [hx], (i, [x]) => {
      const st = step(x, hw, op.gather(hb, i, 0));
      return { state: [st.next], scan: [st.total] };
    });
    helped.output(r.state[0], 'x_final');
    helped.output(r.scan[0], 'totals');

    const one = await openSession(single.toModel(), { threads: 1 });
    let x: Float32Array = x0;
    const expected: number[] = [];
    for (let t = 0; t < K; t++) {
      const out = await one.run({ x: { data: x, dims: [N, D] }, w: { data: w, dims: [D, D] }, b: { data: b.slice(t * D, (t + 1) * D), dims: [D] } });
      x = out.x_next.data as Float32Array;
      expected.push((out.total.data as Float32Array)[0]);
    }
    await one.close();

    for (const model of [looped.toModel(), helped.toModel()]) {
      const loop = await openSession(model, { threads: 1 });
      const out = await loop.run({ x: { data: x0, dims: [N, D] }, w: { data: w, dims: [D, D] }, b: { data: b, dims: [K, D] } });
      await loop.close();
      expect(out.totals.dims).toEqual([K]);
      expect(Array.from(out.x_final.data as Float32Array)).toEqual(Array.from(x));
      expect(Array.from(out.totals.data as Float32Array)).toEqual(expected);
    }
    // The sequence really moved: not a fixed point that any K would reproduce.
    expect(expected[0]).not.toBeCloseTo(expected[K - 1], 3);
  });

  it('differentiates inside a body through ops hoisted to the outer graph', async () => {
    const rnd = random(5);
    const x0 = Float32Array.from({ length: N * D }, rnd);
    const w = Float32Array.from({ length: D * D }, rnd);
    /** y = sigmoid(x W^T); the transpose reads only W, so inside a Loop body it is emitted outside the body. */
    const stepWithGrad = (x: Tensor, wt: Tensor) => {
      const y = op.sigmoid(op.matmul(x, op.transpose(wt, [1, 0])));
      const [gw] = gradients(op.reduceSum(op.mul(y, y), [0, 1]), [wt]);
      return { y, gw: gw! };
    };

    const single = new Graph({ name: 'single' });
    const s = stepWithGrad(single.input('x', 'float32', [N, D]), single.input('w', 'float32', [D, D]));
    single.output(s.y, 'y');
    single.output(s.gw, 'gw');

    const looped = new Graph({ name: 'looped' });
    const wOuter = looped.input('w', 'float32', [D, D]);
    const r = looped.loop(K, [looped.input('x', 'float32', [N, D])], (_, [x]) => {
      const st = stepWithGrad(x, wOuter);
      return { state: [st.y], scan: [st.gw] };
    });
    looped.output(r.scan[0], 'gws');

    const one = await openSession(single.toModel(), { threads: 1 });
    let x: Float32Array = x0;
    const expected: number[] = [];
    for (let t = 0; t < K; t++) {
      const out = await one.run({ x: { data: x, dims: [N, D] }, w: { data: w, dims: [D, D] } });
      x = out.y.data as Float32Array;
      expected.push(...(out.gw.data as Float32Array));
    }
    await one.close();
    const loop = await openSession(looped.toModel(), { threads: 1 });
    const out = await loop.run({ x: { data: x0, dims: [N, D] }, w: { data: w, dims: [D, D] } });
    await loop.close();
    expect(out.gws.dims).toEqual([K, D, D]);
    Array.from(out.gws.data as Float32Array).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  });

  it('rejects a body whose state changes shape', () => {
    const g = new Graph();
    const x = g.input('x', 'float32', [2]);
    expect(() => g.loop(2, [x], (_, [s]) => ({ state: [op.reduceSum(s, [0])] }))).toThrow(/same dtypes and shapes/);
  });
});
