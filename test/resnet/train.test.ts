import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import trainCommand from '../../cli/commands/train.ts';
import { FsStore } from '../../core/store.ts';
import { loadStateDict } from '../../worker/checkpoint/load.ts';
import type { StepInput, TrainerOptions } from '../../worker/clip/api.ts';
import type { Batch } from '../../worker/data/batch.ts';
import { runOnce } from '../../worker/engine/session.ts';
import { createTrainer } from '../../worker/clip/trainer.ts';
import { clipBuffers } from '../../worker/models/clip.ts';
import { parseModelConfig } from '../../core/model-config/config.ts';
import { initParams } from '../../worker/models/init.ts';
import { Rng } from '../../worker/data/rng.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { concatBatches, hyper, randomBatch } from '../models/helpers.ts';
import { simpleShards, tempDir, writeShards } from '../worker/helpers.ts';

/** A small ModifiedResNet unlike the fixture: two blocks in stage 2 (one without downsample), a 1x1 final grid. */
const config = parseModelConfig(
  {
    embed_dim: 8,
    vision_cfg: { image_size: 32, layers: [1, 2, 1, 1], width: 8, head_width: 16, patch_size: null },
    text_cfg: { context_length: 8, vocab_size: 50, width: 8, heads: 2, layers: 1 },
  },
  'tiny-rn',
);

/** open_clip's zero bn3 gains would silence every residual branch; a trained model has non-zero ones. */
function init(): StateDict {
  const p = initParams(config, 5);
  for (const [name, t] of p) if (name.endsWith('bn3.weight')) t.data.fill(0.7);
  return p;
}

async function trainAndSnapshot(opts: Partial<TrainerOptions>, steps: StepInput[], runs: StepInput[][] = [steps]) {
  const trainer = await createTrainer({ config, init: init(), batchSize: 2, hyper, ...opts });
  try {
    const losses = [];
    for (const r of runs) losses.push(...(await trainer.train(r)).map((x) => x.loss));
    return { losses, state: (await trainer.snapshot()).params };
  } finally {
    await trainer.close();
  }
}

function maxDiff(a: StateDict, b: StateDict, names: string[]): number {
  let worst = 0;
  for (const n of names) a.get(n)!.data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b.get(n)!.data[i]))));
  return worst;
}

const bufferNames = clipBuffers(config).map((b) => b.name);
const rng = Rng.fromSeed(11);
const batches: Batch[] = Array.from({ length: 4 }, () => randomBatch(rng, config, 2));

describe('ModifiedResNet training state', () => {
  it('carries BatchNorm buffers through the K-step Loop exactly as through separate runs', async () => {
    const steps = batches.slice(0, 3).map((b) => ({ micro: [b], lr: 1e-3 }));
    const looped = await trainAndSnapshot({ stepsPerRun: 3 }, steps);
    const single = await trainAndSnapshot({ stepsPerRun: 1 }, steps);
    expect(looped.state.get('visual.layer2.1.bn2.num_batches_tracked')!.data[0]).toBe(3);
    expect(maxDiff(looped.state, single.state, [...looped.state.keys()])).toBeLessThan(1e-6);
    looped.losses.forEach((l, i) => expect(l).toBeCloseTo(single.losses[i], 6));
    // The running statistics moved away from open_clip's initial 0 / 1.
    expect(looped.state.get('visual.layer4.0.bn3.running_mean')!.data.some((v) => Math.abs(v) > 1e-3)).toBe(true);
  });

  it('keeps BatchNorm buffers in a resident session exactly as on the host', async () => {
    const steps = batches.slice(0, 3).map((b) => ({ micro: [b], lr: 1e-3 }));
    const host = await trainAndSnapshot({ stepsPerRun: 2 }, steps, [steps.slice(0, 1), steps.slice(1)]);
    const resident = await trainAndSnapshot({ stepsPerRun: 2, residentState: true }, steps, [steps.slice(0, 1), steps.slice(1)]);
    expect(resident.losses).toEqual(host.losses);
    expect(maxDiff(resident.state, host.state, [...host.state.keys()])).toBe(0);
    expect(resident.state.get('visual.layer2.1.bn2.num_batches_tracked')!.data[0]).toBe(3);
  });

  it('updates the buffers once per micro-batch when accumulating, in order', async () => {
    // lr 0 leaves the parameters as they are, so two 1-micro-batch steps see the same weights as one 2-micro-batch step.
    const accumulated = await trainAndSnapshot({ accumulate: 2 }, [{ micro: [batches[0], batches[1]], lr: 0 }]);
    const sequential = await trainAndSnapshot({}, [batches[0], batches[1]].map((b) => ({ micro: [b], lr: 0 })));
    expect(accumulated.state.get('visual.bn1.num_batches_tracked')!.data[0]).toBe(2);
    expect(maxDiff(accumulated.state, sequential.state, bufferNames)).toBeLessThan(1e-6);
    // One batch of 4 is not two of 2: batch statistics differ, so the buffers do.
    const joint = await trainAndSnapshot({ batchSize: 4 }, [{ micro: [concatBatches([batches[0], batches[1]])], lr: 0 }]);
    expect(maxDiff(joint.state, sequential.state, bufferNames)).toBeGreaterThan(1e-4);
  });

  it('freezeBnStats normalises with the running statistics and leaves them unchanged', async () => {
    const steps = batches.slice(0, 2).map((b) => ({ micro: [b], lr: 1e-3 }));
    const frozen = await trainAndSnapshot({ freezeBnStats: true }, steps);
    const trained = await trainAndSnapshot({}, steps);
    expect(maxDiff(frozen.state, init(), bufferNames)).toBe(0);
    expect(maxDiff(frozen.state, init(), ['visual.conv1.weight'])).toBeGreaterThan(0);
    expect(Math.abs(frozen.losses[0] - trained.losses[0])).toBeGreaterThan(1e-4);
  });
});

describe('rsclip train with the RN fixture checkpoint (model.pt)', () => {
  const dir = 'test/fixtures/open_clip-tiny-rn';
  const tmp = tempDir('rn-train');
  afterAll(() => tmp.cleanup());

  it('loads the torch checkpoint, trains in train mode and publishes parameters, buffers and an image encoder', async () => {
    await writeShards(new FsStore(join(tmp.path, 'shards')), simpleShards(2, 5, 64));
    const out = join(tmp.path, 'out');
    const code = await trainCommand.run([
      '--shards', join(tmp.path, 'shards'),
      '--model', `${dir}/model.pt`,
      '--arch', `${dir}/config.json`,
      '--out', out,
      '--max-steps', '3',
      '--batch-size', '4',
      '--no-augment',
    ]);
    expect(code ?? 0).toBe(0);
    const before = loadStateDict(new Uint8Array(readFileSync(`${dir}/model.pt`)), 'model.pt');
    const after = loadStateDict(new Uint8Array(readFileSync(join(out, 'final/model.safetensors'))), 'final/model.safetensors');
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    expect(after.get('visual.layer3.0.downsample.1.num_batches_tracked')!.data[0]).toBe(2 + 3);
    expect(maxDiff(after, before, ['visual.bn1.running_var', 'visual.layer4.0.bn3.running_mean'])).toBeGreaterThan(1e-4);
    expect(maxDiff(after, before, ['visual.attnpool.c_proj.weight'])).toBeGreaterThan(0);
    const image = await runOnce(join(out, 'final/image_encoder.onnx'), { image: { data: new Float32Array(3 * 64 * 64).fill(0.1), dims: [1, 3, 64, 64] } });
    const e = image.embedding.data as Float32Array;
    expect(image.embedding.dims).toEqual([1, 32]);
    expect(Math.hypot(...e)).toBeCloseTo(1, 5);
  }, 120_000);
});
