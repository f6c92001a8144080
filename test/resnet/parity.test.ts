import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadStateDict } from '../../worker/checkpoint/load.ts';
import { readSafetensorsF32 } from '../../core/tensors/safetensors.ts';
import { exportImageEncoder } from '../../worker/clip/export.ts';
import { runOnce } from '../../worker/engine/session.ts';
import { clipBuffers, clipParams } from '../../worker/models/clip.ts';
import { loadModelConfig } from '../../core/model-config/config.ts';
import { openReference, runProbe, type StageResult } from '../../worker/verify/reference.ts';
import { verifyReference } from '../../worker/verify/verify.ts';
import { BATCHNORM_STAGES } from '../../worker/verify/verify-resnet.ts';

const dir = 'test/fixtures/open_clip-tiny-rn';
const config = loadModelConfig(`${dir}/config.json`);

describe('open_clip-tiny-rn parity (ModifiedResNet, BatchNorm)', () => {
  it('declares exactly open_clip state-dict names, shapes and order of parameters and buffers', () => {
    const meta = JSON.parse(readFileSync(`${dir}/meta.json`, 'utf8'));
    const keys = meta.state_dict_keys as [string, number[], string][];
    const ours = new Map([...clipParams(config), ...clipBuffers(config)].map((p) => [p.name, p.shape]));
    expect([...ours.keys()].sort()).toEqual(keys.map(([k]) => k).sort());
    for (const [k, shape] of keys) expect(ours.get(k), k).toEqual(shape);
    expect(clipBuffers(config)).toHaveLength(meta.buffer_count);
    // open_clip order within the parameters (what the optimizer and checkpoints list).
    expect(clipParams(config).map((p) => p.name)).toEqual(keys.map(([k]) => k).filter((k) => !/running_|num_batches/.test(k)));
  });

  it('matches every stage within tolerances.json: eval and train forward, debug taps, grads, steps 1 and 3 with buffers', async () => {
    const results = await verifyReference(dir);
    const byStage = new Map<string, StageResult>(results.map((r) => [r.stage, r]));
    const failing = results.filter((r) => !r.ok).map((r) => `${r.stage}: ${r.worst} > ${r.tolerance} ${r.detail ?? ''}`);
    expect(failing).toEqual([]);
    const tol = JSON.parse(readFileSync(`${dir}/tolerances.json`, 'utf8'));
    const expected: [string, number][] = [
      ['forward', tol.forward.abs],
      ['loss', tol.loss.abs],
      ['forward_train', tol.forward.abs],
      ['loss_train', tol.loss.abs],
      ['debug', tol.debug.rel_l2],
      ['debug_train', tol.debug.rel_l2],
      ['grads.rel_l2', tol.grads.rel_l2],
      ['grads.abs', tol.grads.abs],
      ['step1', tol.step1.abs],
      ['step1.global_update_rel_l2', tol.step1.global_update_rel_l2],
      ['step1_buffers', tol.step1_buffers.abs],
      ['step1_buffers.num_batches_tracked', 0],
      ['step3', tol.step3.abs],
      ['step3_buffers', tol.step3_buffers.abs],
      ['step3_buffers.num_batches_tracked', 0],
      ['step_losses', tol.step_losses.abs],
      ['from_step1.step3', tol.step3.abs],
      ['from_step1.step3.global_update_rel_l2', tol.step3.global_update_rel_l2],
      ['from_step1.step3_buffers', tol.step3_buffers.abs],
      ['from_step1.step3_buffers.num_batches_tracked', 0],
      ['from_step1.step_losses', tol.step_losses.abs],
      ['after_last_step', tol.after_last_step.abs],
      ['after_last_step.eval', tol.after_last_step.abs],
      ['eval_mode_variant.loss1', tol.loss.abs],
      ['eval_mode_variant.losses', tol.step_losses.abs],
      ['eval_mode_variant.buffers_kept', 0],
    ];
    for (const [stage, tolerance] of expected) {
      const r = byStage.get(stage);
      expect(r, stage).toBeDefined();
      expect(r!.skipped, stage).toBeFalsy();
      expect(r!.tolerance, stage).toBe(tolerance);
    }
    // Both debug passes compared the intermediates; the train pass also every BatchNorm's batch statistics (19 x 3).
    expect(byStage.get('debug')!.detail).toMatch(/^8 tensors/);
    expect(byStage.get('debug_train')!.detail).toMatch(/^65 tensors/);
  }, 240_000);

  it('exports a standalone evaluation-mode image encoder that reproduces forward.json', async () => {
    const params = loadStateDict(new Uint8Array(readFileSync(`${dir}/model.pt`)), `${dir}/model.pt`);
    const pixels = readSafetensorsF32(readFileSync(`${dir}/preprocess.safetensors`)).get('pixel_values')!;
    const forward = JSON.parse(readFileSync(`${dir}/forward.json`, 'utf8'));
    const model = exportImageEncoder(config, params, { batch: 6 });
    const out = await runOnce(model, { image: { data: pixels.data, dims: pixels.shape } });
    expect(out.embedding.dims).toEqual([6, 32]);
    const want = (forward.image_features_normalized as number[][]).flat();
    const worst = Math.max(...want.map((v, i) => Math.abs((out.embedding.data as Float32Array)[i] - v)));
    expect(worst).toBeLessThan(1e-4);
  });

  it('reads the running statistics in evaluation mode only: a changed running_var fails the eval stages alone', async () => {
    const ref = await openReference(dir);
    const params = new Map(ref.params);
    const rv = params.get('visual.layer2.0.bn2.running_var')!;
    params.set('visual.layer2.0.bn2.running_var', { shape: rv.shape, data: rv.data.map((v) => v * 1.5) });
    const changed = { ...ref, params };
    const results = await BATCHNORM_STAGES.forward(changed, () => runProbe(changed));
    const verdict = Object.fromEntries(results.map((r) => [r.stage, r.ok]));
    expect(verdict).toEqual({ forward: false, loss: false, forward_train: true, loss_train: true, debug: false, debug_train: true });
  });
});
