import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Graph } from '../../worker/engine/graph.ts';
import * as op from '../../worker/engine/ops.ts';
import { openSession, type EngineSession } from '../../worker/engine/session.ts';

/** y = 2 (x + 1) on [2, 3]. */
function small(): Uint8Array {
  const g = new Graph();
  g.output(op.mul(op.add(g.input('x', 'float32', [2, 3]), 1), 2), 'y');
  return g.toModel();
}
const x = () => ({ data: Float32Array.from([1, 2, 3, 4, 5, 6]), dims: [2, 3] });
const expectedY = [4, 6, 8, 10, 12, 14];

describe('openSession', () => {
  it('runs in a worker thread while the event loop keeps ticking', async () => {
    // ~20 GFLOP of chained 256x256 matmuls in one Loop: long enough that a blocked event loop could not tick
    // (150 iterations once finished in 40 ms on an idle machine).
    const n = 256;
    const g = new Graph();
    const w = g.input('w', 'float32', [n, n]);
    const r = g.loop(600, [g.input('x', 'float32', [n, n])], (_, [s]) => ({ state: [op.sigmoid(op.matmul(s, w))] }));
    g.output(r.state[0], 'y');
    const session = await openSession(g.toModel(), { threads: 1, optimization: 'basic' });
    const ones = () => ({ data: new Float32Array(n * n).fill(1 / n), dims: [n, n] });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const started = Date.now();
    const out = await session.run({ x: ones(), w: ones() });
    const elapsed = Date.now() - started;
    clearInterval(timer);
    await session.close();
    // sigmoid(256 * 1/256 * y) converges to the fixed point y = sigmoid(y) ~ 0.659.
    expect((out.y.data as Float32Array)[0]).toBeCloseTo(0.659, 2);
    // A run on the main thread would allow at most one tick however long it took.
    expect(elapsed).toBeGreaterThan(40);
    expect(ticks).toBeGreaterThanOrEqual(3);
  });

  it('reports names, runs repeatedly, selects outputs and survives a failed run', async () => {
    const session = await openSession(small(), { threads: 1 });
    expect(session.inputNames).toEqual(['x']);
    expect(session.outputNames).toEqual(['y']);
    expect(Array.from((await session.run({ x: x() })).y.data as Float32Array)).toEqual(expectedY);
    await expect(session.run({ wrong: x() })).rejects.toThrow(/session\.run: .*x/);
    await expect(session.run({ x: x() }, ['nope'])).rejects.toThrow(/session\.run:/);
    const again = await session.run({ x: x() }, ['y']);
    expect(Array.from(again.y.data as Float32Array)).toEqual(expectedY);
    await session.close();
    await expect(session.run({ x: x() })).rejects.toThrow(/session is closed/);
  });

  it('copies feeds by default and hands their buffers over with transfer', async () => {
    const session = await openSession(small());
    const kept = x();
    await session.run({ x: kept });
    expect(kept.data.length).toBe(6);
    // Views into a larger buffer, as a flat parameter store would pass them.
    const store = Float32Array.from({ length: 20 }, (_, i) => i);
    const view = { data: store.subarray(7, 13), dims: [2, 3] };
    for (const transfer of [false, true]) {
      const out = await session.run({ x: view }, undefined, { transfer });
      expect(Array.from(out.y.data as Float32Array)).toEqual([16, 18, 20, 22, 24, 26]);
    }
    expect(store.length).toBe(0);
    const handed = x();
    const out = await session.run({ x: handed }, undefined, { transfer: true });
    expect(handed.data.length).toBe(0);
    expect(Array.from(out.y.data as Float32Array)).toEqual(expectedY);
    await session.close();
  });

  it('answers concurrent runs in order and closes only after a pending run', async () => {
    const session = await openSession(small(), { threads: 1 });
    const inputs = [0, 1, 2].map((k) => ({ data: Float32Array.from({ length: 6 }, (_, i) => i + 10 * k), dims: [2, 3] }));
    const runs = inputs.map((feed) => session.run({ x: feed }));
    const closing = session.close();
    const outs = await Promise.all(runs);
    await closing;
    outs.forEach((o, k) => expect(Array.from(o.y.data as Float32Array)).toEqual(Array.from(inputs[k].data, (v) => 2 * (v + 1))));
  });

  it('does not keep the process alive once idle, even unclosed', () => {
    const script = fileURLToPath(new URL('./fixtures/idle-session.ts', import.meta.url));
    const child = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000 });
    expect(child.stdout).toContain('ran 5');
    expect(child.status).toBe(0);
  });

  it('passes int64 and bool tensors both ways', async () => {
    const g = new Graph();
    const i = g.input('i', 'int64', [3]);
    g.output(op.greater(i, 1), 'big');
    g.output(op.add(i, 10), 'shifted');
    const session = await openSession(g.toModel());
    const out = await session.run({ i: { data: BigInt64Array.of(0n, 2n, 5n), dims: [3] } });
    await session.close();
    expect(out.big.bool).toBe(true);
    expect(Array.from(out.big.data as Uint8Array)).toEqual([0, 1, 1]);
    expect(Array.from(out.shifted.data as BigInt64Array)).toEqual([10n, 12n, 15n]);
  });

  it('rejects a malformed model with a clear error', async () => {
    await expect(openSession(Uint8Array.of(1, 2, 3))).rejects.toThrow(/onnxruntime could not create the session/);
  });

  // No silent fallback to CPU: a provider either loads and computes, or its failure names it.
  it.each(['cuda', 'webgpu'] as const)('%s: loads and runs, or fails naming the provider', async (ep) => {
    const opened: EngineSession | Error = await openSession(small(), { ep }).catch((e: Error) => e);
    if (opened instanceof Error) {
      expect(opened.message).toMatch(new RegExp(`execution provider '${ep}' could not be loaded: \\S`));
      return;
    }
    const out = await opened.run({ x: x() });
    await opened.close();
    expect(Array.from(out.y.data as Float32Array)).toEqual(expectedY);
  });
});

describe('carried state', () => {
  /** next = state + step; total = sum(next). */
  function accumulator(): Uint8Array {
    const g = new Graph();
    const next = op.add(g.input('state', 'float32', [2]), g.input('step', 'float32', [2]));
    g.output(next, 'next');
    g.output(op.reduceSum(next, [0]), 'total');
    return g.toModel();
  }
  const v = (...a: number[]) => ({ data: Float32Array.from(a), dims: [a.length] });

  it('keeps an output as the next run\'s input until a run feeds that input, and reads it back', async () => {
    const session = await openSession(accumulator(), { threads: 1, carry: [{ output: 'next', input: 'state', dims: [2] }] });
    try {
      await expect(session.read()).rejects.toThrow(/session\.read: .*nothing carried yet for state/);
      await expect(session.run({ step: v(1, 1) })).rejects.toThrow(/session\.run: carried input state has no value/);
      const first = await session.run({ state: v(1, 2), step: v(1, 1) });
      expect(Object.keys(first)).toEqual(['total']);
      expect(Array.from(first.total.data as Float32Array)).toEqual([5]);
      expect(Array.from((await session.run({ step: v(1, 1) })).total.data as Float32Array)).toEqual([7]);
      expect(Array.from((await session.run({ step: v(0.5, 0) }, ['total'])).total.data as Float32Array)).toEqual([7.5]);
      expect(Array.from((await session.read()).state.data as Float32Array)).toEqual([3.5, 4]);
      // Reading leaves the state where it was; feeding the input replaces it.
      expect(Array.from((await session.run({ step: v(0, 0) })).total.data as Float32Array)).toEqual([7.5]);
      expect(Array.from((await session.run({ state: v(0, 0), step: v(1, 1) })).total.data as Float32Array)).toEqual([2]);
      expect(Array.from((await session.read()).state.data as Float32Array)).toEqual([1, 1]);
    } finally {
      await session.close();
    }
  });

  it.each([[false], [true]])('keeps an input without an output as last fed (a frozen parameter) and leaves it out of read() (uploadFixed %s)', async (uploadFixed) => {
    const g = new Graph();
    const next = op.add(g.input('state', 'float32', [2]), op.mul(g.input('step', 'float32', [2]), g.input('scale', 'float32', [2])));
    g.output(next, 'next');
    g.output(op.reduceSum(next, [0]), 'total');
    const carry = [{ output: 'next', input: 'state', dims: [2] }, { input: 'scale', dims: [2] }];
    const session = await openSession(g.toModel(), { threads: 1, carry, uploadFixed });
    try {
      await expect(session.run({ state: v(0, 0), step: v(1, 1) })).rejects.toThrow(/carried input scale has no value/);
      expect(Array.from((await session.run({ state: v(0, 0), step: v(1, 1), scale: v(2, 3) })).total.data as Float32Array)).toEqual([5]);
      expect(Array.from((await session.run({ step: v(1, 1) })).total.data as Float32Array)).toEqual([10]);
      expect(Array.from((await session.run({ step: v(1, 1), scale: v(1, 0) })).total.data as Float32Array)).toEqual([11]);
      expect(Object.keys(await session.read())).toEqual(['state']);
    } finally {
      await session.close();
    }
  });
});
