import { describe, expect, it } from 'vitest';
import { gradients } from '../../worker/engine/autodiff.ts';
import { Graph } from '../../worker/engine/graph.ts';
import * as op from '../../worker/engine/ops.ts';
import { openSession } from '../../worker/engine/session.ts';
import { createHash } from 'node:crypto';

describe('determinism', () => {
  // Bit-identical resume needs every run of a graph to give the same bits. The embedding gradient sums many
  // duplicate token ids (padding, common words); a scatter that adds them in thread order would not.
  it('the embedding gradient with heavily duplicated ids is bit-identical across runs on 2 threads', async () => {
    const V = 600;
    const D = 64;
    const N = 4096;
    const g = new Graph();
    const table = g.input('table', 'float32', [V, D]);
    const ids = g.input('ids', 'int64', [N]);
    const up = g.input('up', 'float32', [N, D]);
    const loss = op.reduceSum(op.mul(op.gather(table, ids), up), [0, 1]);
    const [grad] = gradients(loss, [table]);
    g.output(grad!, 'grad');
    const session = await openSession(g.toModel(), { threads: 2 });
    const feeds = {
      table: { data: new Float32Array(V * D), dims: [V, D] },
      ids: { data: BigInt64Array.from({ length: N }, (_, i) => BigInt((i * 7919) % 5)), dims: [N] },
      up: { data: Float32Array.from({ length: N * D }, (_, i) => Math.sin(i * 0.7311) * 3), dims: [N, D] },
    };
    const digests = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const out = await session.run(feeds);
      const bytes = out.grad!.data as Float32Array;
      digests.add(createHash('sha256').update(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).digest('hex'));
    }
    await session.close();
    expect(digests.size).toBe(1);
  });
});
