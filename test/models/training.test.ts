import { afterAll, describe, expect, it } from 'vitest';
import type { ClipTrainer, StepInput, TrainerOptions } from '../../worker/clip/api.ts';
import { runOnce } from '../../worker/engine/session.ts';
import { createTrainer } from '../../worker/clip/trainer.ts';
import { names } from '../../worker/clip/train-graph.ts';
import { clipParams } from '../../worker/models/clip.ts';
import { initParams } from '../../worker/models/init.ts';
import { Rng } from '../../worker/data/rng.ts';
import { buildProbeGraph, gradName } from '../../worker/verify/probe.ts';
import { copyDict, type StateDict } from '../../core/tensors/tensor.ts';
import { hyper, randomBatch, variantConfig as cfg } from './helpers.ts';

const init = initParams(cfg, 3);
const open: ClipTrainer[] = [];
/** A trainer over copies of the state it is given: a trainer takes its arrays over, and the tests read them on. */
async function trainer(o: Partial<TrainerOptions> = {}): Promise<ClipTrainer> {
  const optimizer = o.optimizer && { ...o.optimizer, m: copyDict(o.optimizer.m), v: copyDict(o.optimizer.v) };
  const t = await createTrainer({ config: cfg, batchSize: 4, hyper, ...o, init: copyDict(o.init ?? init), optimizer });
  open.push(t);
  return t;
}
afterAll(async () => {
  await Promise.all(open.map((t) => t.close()));
});

const rng = Rng.fromSeed(11);
const steps: StepInput[] = [0.002, 0.001, 0.0005].map((lr) => ({ micro: [randomBatch(rng, cfg, 4)], lr }));

function expectBitIdentical(a: StateDict, b: StateDict, which: string[]): void {
  for (const name of which) expect(Buffer.from(a.get(name)!.data.buffer).equals(Buffer.from(b.get(name)!.data.buffer)), name).toBe(true);
}

describe('trainer on a QuickGELU variant config', () => {
  it('trains end to end: finite, lower loss on a fixed batch, unit-norm embeddings', async () => {
    const t = await trainer({ stepsPerRun: 2 });
    const batch = steps[0].micro[0];
    const results = await t.train(Array.from({ length: 6 }, () => ({ micro: [batch], lr: 0.003 })));
    for (const r of results) expect(Number.isFinite(r.loss) && Number.isFinite(r.gradNorm) && r.logitScale > 0).toBe(true);
    expect(results[5].loss).toBeLessThan(results[0].loss - 0.05);
    const img = await t.encodeImages(batch.images, 4);
    const txt = await t.encodeTexts(batch.tokens, 4);
    expect(img.length).toBe(4 * cfg.embed_dim);
    expect(txt.length).toBe(4 * cfg.embed_dim);
    for (const e of [img, txt]) {
      for (let i = 0; i < 4; i++) {
        const row = e.subarray(i * cfg.embed_dim, (i + 1) * cfg.embed_dim);
        expect(Math.hypot(...row)).toBeCloseTo(1, 5);
      }
    }
    const snap = await t.snapshot();
    expect(snap.optimizer.step).toBe(6);
  });

  it('encodes with the parameters of the latest step, sending them to the encoder once per change', async () => {
    const t = await trainer({ stepsPerRun: 1 });
    const batch = steps[0].micro[0];
    const many = new Float32Array(70 * batch.images.length / 4);
    for (let i = 0; i < 70; i++) many.set(batch.images.subarray((i % 4) * (batch.images.length / 4), ((i % 4) + 1) * (batch.images.length / 4)), i * (batch.images.length / 4));
    const before = await t.encodeImages(many, 70);
    // 70 rows are three encoder runs, of which only the first carried the parameters: the rows agree.
    expect(before.subarray(64 * cfg.embed_dim, 65 * cfg.embed_dim)).toEqual(before.subarray(0, cfg.embed_dim));
    expect(await t.encodeImages(many, 70)).toEqual(before);
    await t.train(steps.slice(0, 1));
    const after = await t.encodeImages(many, 70);
    expect(after).not.toEqual(before);
    const fresh = await trainer({ init: (await t.snapshot()).params });
    expect(await fresh.encodeImages(many, 70)).toEqual(after);
    expect(await t.encodeTexts(batch.tokens, 4)).toEqual(await fresh.encodeTexts(batch.tokens, 4));
  });

  it('runs K=3 steps in one Loop bit-identically to 3 single steps', async () => {
    const looped = await trainer({ stepsPerRun: 3 });
    const single = await trainer({ stepsPerRun: 1 });
    const a = await looped.train(steps);
    const b = await single.train(steps);
    expect(a).toEqual(b);
    const [sa, sb] = [await looped.snapshot(), await single.snapshot()];
    const all = clipParams(cfg).map((p) => p.name);
    expectBitIdentical(sa.params, sb.params, all);
    expectBitIdentical(sa.optimizer.m, sb.optimizer.m, all);
    expectBitIdentical(sa.optimizer.v, sb.optimizer.v, all);
    // And it trained: parameters moved.
    expect(sa.params.get('visual.proj')!.data).not.toEqual(init.get('visual.proj')!.data);
  });

  it.each([[[]], [['^visual\\.']]])(
    'keeps its state in the session (resident, WebGPU\'s default) bit-identically, across K-step and single runs, encoding and snapshots (freeze %j)',
    async (freeze: string[]) => {
      const host = await trainer({ stepsPerRun: 2, freeze });
      const resident = await trainer({ stepsPerRun: 2, freeze, residentState: true });
      const more = Array.from({ length: 7 }, (_, i) => ({ micro: [randomBatch(rng, cfg, 4)], lr: 0.001 + i * 0.0002 }));
      const batch = steps[0].micro[0];
      const all = clipParams(cfg).map((p) => p.name);
      const trained = all.filter((n) => !freeze.some((f) => new RegExp(f).test(n)));
      // 3 steps = one 2-step run and one single step (two sessions); then encodings and a snapshot mid-way; then 7 more.
      for (const chunk of [steps, more]) {
        expect(await resident.train(chunk)).toEqual(await host.train(chunk));
        expect(await resident.encodeImages(batch.images, 4)).toEqual(await host.encodeImages(batch.images, 4));
        expect(await resident.encodeTexts(batch.tokens, 4)).toEqual(await host.encodeTexts(batch.tokens, 4));
        const [a, b] = [await host.snapshot(), await resident.snapshot()];
        expect(b.optimizer.step).toBe(a.optimizer.step);
        expectBitIdentical(a.params, b.params, all);
        expectBitIdentical(a.optimizer.m, b.optimizer.m, trained);
        expectBitIdentical(a.optimizer.v, b.optimizer.v, trained);
      }
    },
  );

  it('resumes from a snapshot exactly where it stopped (AdamW step count included)', async () => {
    const straight = await trainer();
    await straight.train(steps);
    const first = await trainer();
    await first.train(steps.slice(0, 2));
    const saved = await first.snapshot();
    const resumed = await trainer({ init: saved.params, optimizer: saved.optimizer });
    await resumed.train(steps.slice(2));
    const [a, b] = [await straight.snapshot(), await resumed.snapshot()];
    expect(b.optimizer.step).toBe(3);
    const all = clipParams(cfg).map((p) => p.name);
    expectBitIdentical(a.params, b.params, all);
    expectBitIdentical(a.optimizer.v, b.optimizer.v, all);
  });

  it('takes over the arrays it is given and snapshots without copying them, until the next step hands them over', async () => {
    const own = copyDict(init);
    const t = await createTrainer({ config: cfg, init: own, batchSize: 4, hyper });
    open.push(t);
    const proj = own.get('visual.proj')!.data;
    const [a, b] = [await t.snapshot(), await t.snapshot()];
    // No copy at creation or at a snapshot: a checkpoint writes the trainer's own arrays.
    expect(a.params.get('visual.proj')!.data).toBe(proj);
    expect(b.optimizer.m.get('visual.proj')!.data).toBe(a.optimizer.m.get('visual.proj')!.data);
    await t.train([steps[0]]);
    // The step took the buffer to the session thread and back: the old views are detached, a new snapshot has it.
    expect(proj.length).toBe(0);
    const after = (await t.snapshot()).params.get('visual.proj')!.data;
    expect(after.length).toBe(init.get('visual.proj')!.data.length);
    expect(after).not.toEqual(init.get('visual.proj')!.data);
  });

  it('accumulates 2 micro-batches of 3 into the sum of their gradients', async () => {
    const micro = [randomBatch(rng, cfg, 3), randomBatch(rng, cfg, 3)];
    const t = await trainer({ batchSize: 3, accumulate: 2, hyper: { ...hyper, gradClip: 0 } });
    const [r] = await t.train([{ micro, lr: 0.001 }]);
    const { optimizer } = await t.snapshot();
    // Reference: the probe graph's gradients of each micro-batch's own ClipLoss, summed.
    const probe = buildProbeGraph(cfg, 3);
    const s = cfg.vision_cfg.image_size;
    const feeds = Object.fromEntries(clipParams(cfg).map((p) => [names.param(p.name), { data: init.get(p.name)!.data, dims: p.shape }]));
    const outs = await Promise.all(
      micro.map((b) =>
        runOnce(probe, {
          ...feeds,
          images: { data: b.images, dims: [3, 3, s, s] },
          tokens: { data: BigInt64Array.from(b.tokens, BigInt), dims: [3, cfg.text_cfg.context_length] },
        }),
      ),
    );
    let total = 0;
    for (const p of clipParams(cfg)) {
      const g0 = outs[0][gradName(p.name)].data as Float32Array;
      const g1 = outs[1][gradName(p.name)].data as Float32Array;
      // After one step from zero moments, m = (1 - beta1) * g exactly as AdamW computes it.
      const m = optimizer.m.get(p.name)!.data;
      let d = 0;
      let n = 0;
      for (let i = 0; i < m.length; i++) {
        const sum = g0[i] + g1[i];
        d += (m[i] / (1 - hyper.beta1) - sum) ** 2;
        n += sum * sum;
        total += sum * sum;
      }
      expect(Math.sqrt(d / Math.max(n, 1e-30)), p.name).toBeLessThan(1e-5);
    }
    expect(r.gradNorm).toBeCloseTo(Math.sqrt(total), 4);
    expect(r.loss).toBeCloseTo(((outs[0].loss.data as Float32Array)[0] + (outs[1].loss.data as Float32Array)[0]) / 2, 5);
  });

  it('nests the micro-batch Loop inside the K-step Loop without changing a bit', async () => {
    const two = steps.slice(0, 2).map((s) => ({ micro: [randomBatch(rng, cfg, 2), randomBatch(rng, cfg, 2)], lr: s.lr }));
    const nested = await trainer({ batchSize: 2, accumulate: 2, stepsPerRun: 2 });
    const flat = await trainer({ batchSize: 2, accumulate: 2, stepsPerRun: 1 });
    expect(await nested.train(two)).toEqual(await flat.train(two));
    const all = clipParams(cfg).map((p) => p.name);
    expectBitIdentical((await nested.snapshot()).params, (await flat.snapshot()).params, all);
  });

  it('leaves frozen parameters bit-identical and keeps no optimizer state for them', async () => {
    const t = await trainer({ freeze: ['^visual\\.', '^logit_scale$'], stepsPerRun: 2 });
    await t.train(steps.slice(0, 2));
    const { params, optimizer } = await t.snapshot();
    const names = clipParams(cfg).map((p) => p.name);
    const frozen = names.filter((n) => n.startsWith('visual.') || n === 'logit_scale');
    expectBitIdentical(params, init, frozen);
    expect([...optimizer.m.keys()].some((n) => frozen.includes(n))).toBe(false);
    expect(params.get('text_projection')!.data).not.toEqual(init.get('text_projection')!.data);
    await expect(createTrainer({ config: cfg, init, batchSize: 4, hyper, freeze: ['^nothing'] })).rejects.toThrow(/matches no parameter/);
  });

  it('clamps logit_scale to [0, ln 100] after each step', async () => {
    for (const [start, want] of [
      [5, Math.fround(Math.log(100))],
      [-0.3, 0],
    ]) {
      const t = await trainer({ init: new Map([...init, ['logit_scale', { shape: [], data: Float32Array.of(start) }]]) });
      const [r] = await t.train([steps[0]]);
      expect((await t.snapshot()).params.get('logit_scale')!.data[0]).toBe(want);
      expect(r.logitScale).toBeCloseTo(Math.exp(want), 4);
    }
  });

  it('rejects batches of the wrong shape with the step and micro-batch named', async () => {
    const t = await trainer();
    const bad = { images: new Float32Array(10), tokens: steps[0].micro[0].tokens };
    await expect(t.train([steps[0], { micro: [bad], lr: 0.001 }])).rejects.toThrow(/step 1 micro-batch 0: 10 pixel values/);
  });

  it('checks the initial parameters against the config', async () => {
    const missing = new Map(init);
    missing.delete('visual.proj');
    await expect(createTrainer({ config: cfg, init: missing, batchSize: 4, hyper })).rejects.toThrow(/lacks visual\.proj/);
  });
});
