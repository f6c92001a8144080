import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import type { StageResult } from '../../worker/verify/reference.ts';
import { verifyReference } from '../../worker/verify/verify.ts';
import type { Batch } from '../../worker/data/batch.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { OptimizerHyper } from '../../worker/engine/options.ts';
import { parseModelConfig } from '../../core/model-config/config.ts';

/** A small ViT CLIP unlike the fixture: QuickGELU, 3 vision heads, 16-pixel patches, short context, small vocab. */
export const variantConfig: ClipModelConfig = parseModelConfig(
  {
    embed_dim: 16,
    quick_gelu: true,
    vision_cfg: { image_size: 32, patch_size: 16, width: 24, layers: 2, head_width: 8, mlp_ratio: 2 },
    text_cfg: { context_length: 12, vocab_size: 100, width: 16, heads: 2, layers: 1 },
  },
  'variantConfig',
);

export const hyper: OptimizerHyper = { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2, gradClip: 1 };

export { randomBatch } from '../../worker/verify/random-batch.ts';

export function concatBatches(bs: Batch[]): Batch {
  const images = new Float32Array(bs.reduce((a, b) => a + b.images.length, 0));
  const tokens = new Int32Array(bs.reduce((a, b) => a + b.tokens.length, 0));
  let i = 0;
  let t = 0;
  for (const b of bs) {
    images.set(b.images, i);
    tokens.set(b.tokens, t);
    i += b.images.length;
    t += b.tokens.length;
  }
  return { images, tokens };
}

/**
 * verify-reference on a reference folder: every stage within tolerance and none skipped, and each listed stage
 * checked against the given tolerance (read by the caller from the folder's tolerances.json).
 */
export async function expectConformance(dir: string, tolerances: (tol: Record<string, Record<string, number>>) => [string, number][]): Promise<Map<string, StageResult>> {
  const results = await verifyReference(dir);
  const failing = results.filter((r) => !r.ok).map((r) => `${r.stage}: ${r.worst} > ${r.tolerance} ${r.detail ?? ''}`);
  expect(failing).toEqual([]);
  expect(results.filter((r) => r.skipped)).toEqual([]);
  const stages = new Map<string, StageResult>(results.map((r) => [r.stage, r]));
  for (const [stage, value] of tolerances(JSON.parse(readFileSync(`${dir}/tolerances.json`, 'utf8')))) {
    expect(stages.get(stage)?.tolerance, stage).toBe(value);
  }
  return stages;
}
