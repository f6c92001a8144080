import { describe, expect, it } from 'vitest';
import { Graph } from '../../worker/engine/graph.ts';
import { inPlaceSafe } from '../../worker/engine/in-place.ts';
import * as op from '../../worker/engine/ops.ts';
import { openSession } from '../../worker/engine/session.ts';

/**
 * One linear layer's step by hand: dW = x^T dy, dx = dy W^T, W' = W - 0.1 dW. With `couple`, W' also depends on
 * dx's norm (as global-norm clipping makes every update depend on every gradient).
 */
function layerStep(couple: boolean): Graph {
  const g = new Graph();
  const x = g.input('x', 'float32', [2, 3]);
  const w = g.input('w', 'float32', [3, 3]);
  const dy = g.input('dy', 'float32', [2, 3]);
  const dw = op.matmul(op.transpose(x, [1, 0]), dy);
  const dx = op.matmul(dy, op.transpose(w, [1, 0]));
  const scale = couple ? op.add(op.reduceSum(op.mul(dx, dx), [0, 1]), 1) : g.constant(1, [], 'float32');
  g.output(op.sub(w, op.mul(op.div(dw, scale), 0.1)), 'new_w');
  g.output(dx, 'dx');
  return g;
}

describe('inPlaceSafe', () => {
  it('refuses a write the graph does not order after every read, accepts it once the update depends on that read', () => {
    expect(inPlaceSafe(layerStep(false).proto(), [{ output: 'new_w', input: 'w' }])).toEqual([]);
    expect(inPlaceSafe(layerStep(true).proto(), [{ output: 'new_w', input: 'w' }])).toEqual([{ output: 'new_w', input: 'w' }]);
    // A shape mismatch is never written in place.
    expect(inPlaceSafe(layerStep(true).proto(), [{ output: 'dx', input: 'x' }])).toEqual([]);
  });

  it('a run with `into` writes the new values into the fed buffer and returns that buffer', async () => {
    const model = layerStep(true).toModel();
    const feeds = () => ({
      x: { data: Float32Array.from([1, 2, 3, 4, 5, 6]), dims: [2, 3] },
      w: { data: Float32Array.from([1, 0, 2, 0, 1, 0, 3, 0, 1]), dims: [3, 3] },
      dy: { data: Float32Array.from([0.5, -1, 2, 1, 0, -0.5]), dims: [2, 3] },
    });
    const session = await openSession(model, { threads: 1 });
    try {
      const plain = await session.run(feeds());
      const fed = feeds();
      const inPlace = await session.run(fed, undefined, { transfer: true, into: { new_w: 'w' } });
      expect(fed.w.data.length).toBe(0); // handed over
      expect([...(inPlace.new_w.data as Float32Array)]).toEqual([...(plain.new_w.data as Float32Array)]);
      expect([...(inPlace.dx.data as Float32Array)]).toEqual([...(plain.dx.data as Float32Array)]);
      expect((inPlace.new_w.data as Float32Array).buffer.byteLength).toBe(9 * 4);
    } finally {
      await session.close();
    }
  });
});
