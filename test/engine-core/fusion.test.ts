import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { gradients } from '../../worker/engine/autodiff.ts';
import { Graph, type Tensor } from '../../worker/engine/graph.ts';
import * as op from '../../worker/engine/ops.ts';
import { runOnce } from '../../worker/engine/session.ts';

const tmp = mkdtempSync(join(tmpdir(), 'engine-fusion-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The op types onnxruntime leaves after level-'all' optimisation, read from the serialised optimised model. */
async function optimised(name: string, f: (x: Tensor) => Tensor): Promise<string> {
  const g = new Graph();
  const w = g.input('w', 'float32', [8, 8]);
  const y = f(op.matmul(g.input('x', 'float32', [4, 8]), w));
  const loss = op.reduceSum(op.mul(y, y), [0, 1]);
  g.output(loss, 'loss');
  g.output(gradients(loss, [w])[0]!, 'grad_w');
  const path = join(tmp, `${name}.onnx`);
  const session = await ort.InferenceSession.create(g.toModel(), { graphOptimizationLevel: 'all', optimizedModelFilePath: path });
  await session.release();
  return readFileSync(path).toString('latin1');
}

// The VJPs recompute what they need without repeating a forward node: a shared node would give the forward's
// intermediate a second consumer and block onnxruntime's activation fusion.
describe('activation forwards stay fused when their VJP is in the graph', () => {
  it('gelu becomes com.microsoft Gelu', async () => {
    expect(await optimised('gelu', op.gelu)).toContain('Gelu');
  });
  it('quickGelu becomes com.microsoft QuickGelu', async () => {
    expect(await optimised('quick', op.quickGelu)).toContain('QuickGelu');
  });
});

describe("level 'all' fusions leave gradients unchanged", () => {
  it('transformer-style block: residual add, LayerNorm, matmul, bias, GELU', async () => {
    const g = new Graph();
    const x = g.input('x', 'float32', [2, 4, 8]);
    const r = g.input('r', 'float32', [2, 4, 8]);
    const w = g.input('w', 'float32', [8]);
    const b = g.input('b', 'float32', [8]);
    const w2 = g.input('w2', 'float32', [8, 8]);
    const y = op.gelu(op.add(op.matmul(op.layerNorm(op.add(x, r), w, b), w2), b));
    const loss = op.reduceSum(op.mul(y, y), [0, 1, 2]);
    g.output(loss, 'loss');
    gradients(loss, [x, w, b, w2]).forEach((t, i) => g.output(t!, `grad${i}`));
    const model = g.toModel();
    const wave = (n: number, k: number) => ({ data: Float32Array.from({ length: n }, (_, i) => Math.sin(i * k)), dims: [] as number[] });
    const feeds = {
      x: { ...wave(64, 1.3), dims: [2, 4, 8] },
      r: { ...wave(64, 0.7), dims: [2, 4, 8] },
      w: { ...wave(8, 2.1), dims: [8] },
      b: { ...wave(8, 0.4), dims: [8] },
      w2: { ...wave(64, 0.9), dims: [8, 8] },
    };
    const basic = await runOnce(model, feeds, { optimization: 'basic', threads: 1 });
    const all = await runOnce(model, feeds, { optimization: 'all', threads: 1 });
    for (const name of ['loss', 'grad0', 'grad1', 'grad2', 'grad3']) {
      const a = basic[name].data as Float32Array;
      const c = all[name].data as Float32Array;
      expect(a.some((v) => v !== 0)).toBe(true);
      a.forEach((v, i) => expect(Math.abs(c[i] - v)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(v))));
    }
  });
});
