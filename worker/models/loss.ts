import type { Tensor } from '../engine/graph.ts';
import { add, div, logSoftmax, matmul, maximum, mul, neg, reduceSum, sqrt, transpose } from '../engine/ops.ts';

/** F.normalize(x, dim=-1): x / max(||x||, 1e-12). */
export function l2normalize(x: Tensor): Tensor {
  return div(x, maximum(sqrt(reduceSum(mul(x, x), [-1], true)), 1e-12));
}

/** open_clip ClipLoss for one process: two separate products, labels = arange(N), mean of both cross-entropies. */
export function clipLoss(imageNorm: Tensor, textNorm: Tensor, scale: Tensor): { loss: Tensor; logitsPerImage: Tensor; logitsPerText: Tensor } {
  const n = imageNorm.shape[0];
  const logitsPerImage = mul(scale, matmul(imageNorm, transpose(textNorm, [1, 0])));
  const logitsPerText = mul(scale, matmul(textNorm, transpose(imageNorm, [1, 0])));
  // The diagonal picks each row's label; multiplying by an identity mask adds exact zeros only.
  const eye = new Float32Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  const labels = imageNorm.graph.constant(eye, [n, n]);
  const crossEntropy = (logits: Tensor) => neg(div(reduceSum(mul(logSoftmax(logits, -1), labels), [0, 1]), n));
  const loss = div(add(crossEntropy(logitsPerImage), crossEntropy(logitsPerText)), 2);
  return { loss, logitsPerImage, logitsPerText };
}
