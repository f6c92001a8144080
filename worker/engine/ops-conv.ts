/**
 * Differentiable ops of convolutional towers, each applying one entry of rules-conv.ts (NCHW layout).
 */
import type { Tensor } from './graph.ts';
import { apply } from './ops.ts';
import { convRules } from './rules-conv.ts';

/** Conv2d without bias: x [N,C,H,W], weight [O,C,k,k]; square stride and zero padding. */
export const conv2d = (x: Tensor, weight: Tensor, o: { stride?: number; pad?: number } = {}): Tensor =>
  apply('conv2d', convRules.conv2d, [x, weight], { stride: o.stride ?? 1, pad: o.pad ?? 0 })[0];

/** Training-mode BatchNorm: y normalised with the batch mean and biased variance, which are returned too ([C]). */
export function batchNormTrain(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): { y: Tensor; mean: Tensor; variance: Tensor } {
  const [y, mean, variance] = apply('batchNormTrain', convRules.batchNormTrain, [x, weight, bias], { eps });
  return { y, mean, variance };
}

/** Evaluation-mode BatchNorm with running statistics (which get no gradient). */
export const batchNormEval = (x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, variance: Tensor, eps = 1e-5): Tensor =>
  apply('batchNormEval', convRules.batchNormEval, [x, weight, bias, mean, variance], { eps })[0];

/** AvgPool2d(kernel): stride = kernel, no padding, floor mode. */
export const avgPool2d = (x: Tensor, kernel: number): Tensor => apply('avgPool2d', convRules.avgPool2d, [x], { kernel })[0];
