/**
 * open_clip's optimizer rule as graph code: global-norm gradient clipping (torch.nn.utils.clip_grad_norm_),
 * torch 1.13 AdamW (single-tensor path) and the parameter-group rule for weight decay.
 */
import type { OptimizerHyper } from './api.ts';
import type { Tensor } from './graph.ts';
import { add, cast, clip, concat, div, exp, mul, reduceSum, reshape, sqrt, sub } from './ops.ts';

/** open_clip's `exclude`: gains, biases, BatchNorm/LayerNorm parameters and the logit scale get no weight decay. */
export const excludedFromDecay = (name: string, shape: readonly number[]): boolean =>
  shape.length < 2 || /bn|ln|bias|logit_scale/.test(name);

/** Parameters matching any freeze pattern are neither updated nor decayed (nor counted in the gradient norm). */
export function frozenMatcher(patterns: readonly string[] = []): (name: string) => boolean {
  const res = patterns.map((p) => {
    try {
      return new RegExp(p);
    } catch (err) {
      throw new Error(`freeze pattern ${JSON.stringify(p)} is not a valid regular expression: ${(err as Error).message}`);
    }
  });
  return (name) => res.some((r) => r.test(name));
}

const flatten = (t: Tensor): Tensor => reshape(t, [t.shape.reduce((a, b) => a * b, 1)]);

/**
 * clip_grad_norm_: total = ||[||g_i||]||; every gradient is scaled by min(maxNorm / (total + 1e-6), 1).
 * Returns the norm before clipping; maxNorm 0 leaves the gradients as they are.
 */
export function clipGradNorm(grads: Tensor[], maxNorm: number): { grads: Tensor[]; norm: Tensor } {
  const norms = grads.map((g) => {
    const f = flatten(g);
    return reshape(sqrt(reduceSum(mul(f, f), [0])), [1]);
  });
  const all = concat(norms, 0);
  const norm = sqrt(reduceSum(mul(all, all), [0]));
  if (!(maxNorm > 0)) return { grads, norm };
  const coef = clip(div(maxNorm, add(norm, 1e-6)), undefined, 1);
  return { grads: grads.map((g) => mul(g, coef)), norm };
}

/** The step's float scalars: torch computes them as Python floats (double) and rounds them to float32 when applied. */
export interface AdamWScalars {
  /** 1 - lr * weight_decay */
  decay: Tensor;
  /** lr / (1 - beta1^t) */
  stepSize: Tensor;
  /** sqrt(1 - beta2^t) */
  bc2Sqrt: Tensor;
}

/** `lr` and the 1-based step `t` as float64 scalars. */
export function adamwScalars(lr: Tensor, t: Tensor, h: OptimizerHyper): AdamWScalars {
  const f32 = (x: Tensor) => cast(x, 'float32');
  const bc1 = sub(1, exp(mul(t, Math.log(h.beta1))));
  const bc2 = sub(1, exp(mul(t, Math.log(h.beta2))));
  return { decay: f32(sub(1, mul(lr, h.weightDecay))), stepSize: f32(div(lr, bc1)), bc2Sqrt: f32(sqrt(bc2)) };
}

/**
 * One AdamW update of one tensor, element for element as torch 1.13:
 * p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; p -= stepSize * m / (sqrt(v)/sqrt(bc2) + eps).
 */
export function adamwUpdate(
  p: Tensor,
  m: Tensor,
  v: Tensor,
  g: Tensor,
  s: AdamWScalars,
  h: OptimizerHyper,
  decayed: boolean,
): { p: Tensor; m: Tensor; v: Tensor } {
  const decayedP = decayed && h.weightDecay > 0 ? mul(p, s.decay) : p;
  const m1 = add(mul(m, h.beta1), mul(g, 1 - h.beta1));
  const v1 = add(mul(v, h.beta2), mul(mul(g, 1 - h.beta2), g));
  const denom = add(div(sqrt(v1), s.bc2Sqrt), h.eps);
  return { p: sub(decayedP, div(mul(m1, s.stepSize), denom)), m: m1, v: v1 };
}
