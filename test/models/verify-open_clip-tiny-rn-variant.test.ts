import { describe, it } from 'vitest';
import { expectConformance } from './helpers.ts';

/**
 * A second ModifiedResNet reference folder, made by real PyTorch + open_clip with a config other than the
 * shipped open_clip-tiny-rn (image 32, width 8, layers [1, 2, 1, 1], head_width 16, embed 24, 1 text layer):
 * guards against conformance that only holds for the one fixture's shapes (a 2-block stage, a 1x1 attnpool grid).
 */
const dir = 'test/fixtures/open_clip-tiny-rn-variant';

describe('verify-reference on open_clip-tiny-rn-variant (ModifiedResNet, other config)', () => {
  it('passes every stage within the folder tolerances', async () => {
    await expectConformance(dir, (tol) => [
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
      ['from_step1.step3', tol.step3.abs],
      ['from_step1.step3_buffers', tol.step3_buffers.abs],
      ['after_last_step', tol.after_last_step.abs],
      ['after_last_step.eval', tol.after_last_step.abs],
      ['eval_mode_variant.loss1', tol.loss.abs],
    ]);
  }, 60_000);
});
