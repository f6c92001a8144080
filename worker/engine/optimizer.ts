/**
 * open_clip's optimizer rule as graph code: global-norm gradient clipping (torch.nn.utils.clip_grad_norm_),
 * torch 1.13 AdamW (single-tensor path) and the parameter-group rule for weight decay.
 */
import type { OptimizerHyper } from './options.ts';
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

/**
 * clip_grad_norm_: total = ||[||g_i||]||; every gradient is to be scaled by coef = min(maxNorm / (total + 1e-6), 1).
 * Returns the norm before clipping and `coef` (absent when maxNorm is 0); the scaling itself is folded into the
 * AdamW scalars (adamwScalars), which saves a full pass over every gradient. Each per-tensor norm is one
 * ReduceSumSquare pass (no squared copy).
 */
export function clipGradNorm(grads: Tensor[], maxNorm: number): { norm: Tensor; coef?: Tensor } {
  const norms = grads.map((g) => reshape(sqrt(g.graph.node('ReduceSumSquare', [g], { keepdims: 0 }, [{ dtype: g.dtype, shape: [] }])[0]), [1]));
  const all = concat(norms, 0);
  const norm = sqrt(reduceSum(mul(all, all), [0]));
  if (!(maxNorm > 0)) return { norm };
  return { norm, coef: clip(div(maxNorm, add(norm, 1e-6)), undefined, 1) };
}

/**
 * The step's scalars. torch computes lr, bias corrections and step size as Python floats (double) and rounds them
 * to float32 when applied; the clipping coefficient is float32 already.
 */
export interface AdamWScalars {
  /** 1 - lr * weight_decay */
  decay: Tensor;
  /** (1 - beta1) * coef: m = beta1*m + (1-beta1)*(coef*g) */
  gradScale1: Tensor;
  /** (1 - beta2) * coef^2: v = beta2*v + (1-beta2)*(coef*g)^2 */
  gradScale2: Tensor;
  /** lr / (1 - beta1^t) * sqrt(1 - beta2^t) */
  stepSize: Tensor;
  /** eps * sqrt(1 - beta2^t) */
  eps: Tensor;
}

/** `lr` and the 1-based step `t` as float64 scalars; `coef` the float32 clipping coefficient, if any. */
export function adamwScalars(lr: Tensor, t: Tensor, h: OptimizerHyper, coef?: Tensor): AdamWScalars {
  const f32 = (x: Tensor) => cast(x, 'float32');
  const bc1 = sub(1, exp(mul(t, Math.log(h.beta1))));
  const bc2Sqrt = sqrt(sub(1, exp(mul(t, Math.log(h.beta2)))));
  const one = lr.graph.constant(1, [], 'float32');
  const c = coef ?? one;
  return {
    decay: f32(sub(1, mul(lr, h.weightDecay))),
    gradScale1: mul(c, 1 - h.beta1),
    gradScale2: mul(mul(c, c), 1 - h.beta2),
    stepSize: f32(mul(div(lr, bc1), bc2Sqrt)),
    eps: f32(mul(bc2Sqrt, h.eps)),
  };
}

/**
 * One AdamW update of one tensor as torch 1.13 (single-tensor path), with the clipping scale and the bias
 * correction of v moved into scalars: 13 full-size element-wise ops per parameter (with the norm's one pass and
 * no separate clipping pass, 14 instead of 17 per step):
 * p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; p -= stepSize * m / (sqrt(v)/sqrt(bc2) + eps),
 * where stepSize * m / (sqrt(v)/sqrt(bc2) + eps) = (stepSize*sqrt(bc2)) * m / (sqrt(v) + eps*sqrt(bc2)).
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
  const m1 = add(mul(m, h.beta1), mul(g, s.gradScale1));
  const v1 = add(mul(v, h.beta2), mul(mul(g, s.gradScale2), g));
  return { p: sub(decayedP, div(mul(m1, s.stepSize), add(sqrt(v1), s.eps))), m: m1, v: v1 };
}
