import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { verifyReference, type StageResult } from '../../worker/models/reference.ts';

/**
 * A second ModifiedResNet reference folder, made by real PyTorch + open_clip with a config other than the
 * shipped open_clip-tiny-rn (image 32, width 8, layers [1, 2, 1, 1], head_width 16, embed 24, 1 text layer):
 * guards against conformance that only holds for the one fixture's shapes (a 2-block stage, a 1x1 attnpool grid).
 */
const dir = 'test/fixtures/open_clip-tiny-rn-variant';

describe('verify-reference on open_clip-tiny-rn-variant (ModifiedResNet, other config)', () => {
  it('passes every stage within the folder tolerances', async () => {
    const results = await verifyReference(dir);
    const failing = results.filter((r) => !r.ok).map((r) => `${r.stage}: ${r.worst} > ${r.tolerance} ${r.detail ?? ''}`);
    expect(failing).toEqual([]);
    const stages = new Map<string, StageResult>(results.map((r) => [r.stage, r]));
    // Every BatchNorm stage ran (none skipped), with the tolerances of tolerances.json.
    const tol = JSON.parse(readFileSync(`${dir}/tolerances.json`, 'utf8'));
    for (const [stage, value] of [
      ['forward', tol.forward.abs],
      ['forward_train', tol.forward.abs],
      ['debug', tol.debug.rel_l2],
      ['debug_train', tol.debug.rel_l2],
      ['grads.rel_l2', tol.grads.rel_l2],
      ['step1', tol.step1.abs],
      ['step1_buffers', tol.step1_buffers.abs],
      ['step3', tol.step3.abs],
      ['step3_buffers', tol.step3_buffers.abs],
      ['step_losses', tol.step_losses.abs],
      ['eval_mode_variant.loss1', tol.loss.abs],
    ] as [string, number][]) {
      expect(stages.get(stage)?.tolerance, stage).toBe(value);
    }
    expect(results.filter((r) => r.skipped)).toEqual([]);
  }, 60_000);
});
