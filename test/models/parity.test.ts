import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensorsF32 } from '../../core/tensors/safetensors.ts';
import { exportImageEncoder, exportTextEncoder } from '../../worker/clip/export.ts';
import { runOnce } from '../../worker/engine/session.ts';
import { loadModelConfig } from '../../core/model-config/config.ts';
import type { StageResult } from '../../worker/verify/reference.ts';
import { verifyReference } from '../../worker/verify/verify.ts';

const dir = 'test/fixtures/open_clip-tiny';

describe('open_clip-tiny parity', () => {
  it('matches every stage (forward, loss, each gradient, steps 1 and 3, evaluation after training) within tolerances.json', async () => {
    const results = await verifyReference(dir);
    const byStage = new Map<string, StageResult>(results.map((r) => [r.stage, r]));
    const failing = results.filter((r) => !r.ok).map((r) => `${r.stage}: ${r.worst} > ${r.tolerance} ${r.detail ?? ''}`);
    expect(failing).toEqual([]);
    for (const stage of ['forward', 'loss', 'grads.rel_l2', 'grads.abs', 'step1', 'step3', 'step_losses', 'from_step1.step3', 'from_step1.step_losses', 'after_last_step', 'after_last_step.eval']) {
      const r = byStage.get(stage);
      expect(r, stage).toBeDefined();
      expect(r!.skipped, stage).toBeFalsy();
      expect(r!.tolerance, stage).toBeGreaterThan(0);
    }
    // tolerances.json is what is enforced, not the built-in fallbacks.
    const tol = JSON.parse(readFileSync(`${dir}/tolerances.json`, 'utf8'));
    expect(byStage.get('grads.rel_l2')!.tolerance).toBe(tol.grads.rel_l2);
    expect(byStage.get('step3')!.tolerance).toBe(tol.step3.abs);
  });

  it('exports standalone encoders that reproduce the normalised features', async () => {
    const config = loadModelConfig(`${dir}/config.json`);
    const params = readSafetensorsF32(readFileSync(`${dir}/model.safetensors`));
    const pixels = readSafetensorsF32(readFileSync(`${dir}/preprocess.safetensors`)).get('pixel_values')!;
    const tokens = JSON.parse(readFileSync(`${dir}/tokens.json`, 'utf8')).tokens as number[][];
    const forward = JSON.parse(readFileSync(`${dir}/forward.json`, 'utf8'));
    const image = await runOnce(exportImageEncoder(config, params, { batch: 6 }), { image: { data: pixels.data, dims: pixels.shape } });
    const text = await runOnce(exportTextEncoder(config, params, { batch: 6 }), {
      text: { data: BigInt64Array.from(tokens.flat(), BigInt), dims: [6, 77] },
    });
    const worst = (ours: Float32Array, want: number[][]) => Math.max(...want.flat().map((v, i) => Math.abs(ours[i] - v)));
    expect(image.embedding.dims).toEqual([6, 32]);
    expect(worst(image.embedding.data as Float32Array, forward.image_features_normalized)).toBeLessThan(1e-4);
    expect(worst(text.embedding.data as Float32Array, forward.text_features_normalized)).toBeLessThan(1e-4);

    // Weights in an external data file (what models past protobuf's 2 GB limit need) give the same embedding.
    const out = mkdtempSync(join(tmpdir(), 'export-'));
    const model = exportTextEncoder(config, params, { batch: 6, externalData: join(out, 'text.onnx.data') });
    expect(model.length).toBeLessThan(100_000);
    writeFileSync(join(out, 'text.onnx'), model);
    const external = await runOnce(join(out, 'text.onnx'), { text: { data: BigInt64Array.from(tokens.flat(), BigInt), dims: [6, 77] } });
    expect(external.embedding.data).toEqual(text.embedding.data);
  });

  it('exports encoders with a dynamic batch that serve any number of rows', async () => {
    const config = loadModelConfig(`${dir}/config.json`);
    const params = readSafetensorsF32(readFileSync(`${dir}/model.safetensors`));
    const pixels = readSafetensorsF32(readFileSync(`${dir}/preprocess.safetensors`)).get('pixel_values')!;
    const tokens = JSON.parse(readFileSync(`${dir}/tokens.json`, 'utf8')).tokens as number[][];
    const forward = JSON.parse(readFileSync(`${dir}/forward.json`, 'utf8'));
    const imageModel = exportImageEncoder(config, params);
    const textModel = exportTextEncoder(config, params);
    const worst = (ours: Float32Array, want: number[][]) => Math.max(...want.flat().map((v, i) => Math.abs(ours[i] - v)));
    // Rows go through groups of 16, 4 and 1: 37 = 2x16 + 1x4 + 1, 6 = 4 + 2x1, 2 = 2x1, 16 = 1x16, and none.
    const cycle = <T>(rows: T[], n: number): T[] => Array.from({ length: n }, (_, i) => rows[i % rows.length]!);
    const imageRows = Array.from({ length: 6 }, (_, i) => pixels.data.subarray(i * 3 * 32 * 32, (i + 1) * 3 * 32 * 32));
    for (const n of [37, 6, 2, 16, 0]) {
      const pix = new Float32Array(n * 3 * 32 * 32);
      cycle(imageRows, n).forEach((r, i) => pix.set(r, i * r.length));
      const image = await runOnce(imageModel, { image: { data: pix, dims: [n, 3, 32, 32] } });
      const text = await runOnce(textModel, { text: { data: BigInt64Array.from(cycle(tokens, n).flat(), BigInt), dims: [n, 77] } });
      expect(image.embedding.dims).toEqual([n, 32]);
      expect(text.embedding.dims).toEqual([n, 32]);
      if (n === 0) continue;
      expect(worst(image.embedding.data as Float32Array, cycle(forward.image_features_normalized, n))).toBeLessThan(1e-4);
      expect(worst(text.embedding.data as Float32Array, cycle(forward.text_features_normalized, n))).toBeLessThan(1e-4);
    }
  });
});
