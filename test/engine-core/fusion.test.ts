import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { gradients } from '../../worker/engine/autodiff.ts';
import { Graph, type Tensor } from '../../worker/engine/graph.ts';
import * as op from '../../worker/engine/ops.ts';

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
