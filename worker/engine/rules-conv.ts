/**
 * Op-table entries for convolutional towers (open_clip's ModifiedResNet): Conv, BatchNorm in training and
 * evaluation mode, and non-overlapping average pooling. Same Rule shape as rules.ts (shape rule, ONNX emission and
 * VJP side by side); ops-conv.ts applies them. Layout is NCHW throughout.
 */
import { floatAttr, isFloat, type Graph, type Tensor } from './graph.ts';
import * as ops from './ops.ts';
import type { Rule, Spec } from './rules.ts';

const fail = (op: string, msg: string, ins: readonly Tensor[]): never => {
  throw new Error(`${op}: ${msg} (operands ${ins.map(String).join(', ')})`);
};

export interface ConvAttrs {
  stride: number;
  pad: number;
}

/** Output size of a strided, zero-padded window along one axis (floor mode). */
const windows = (size: number, kernel: number, stride: number, pad: number) => Math.floor((size + 2 * pad - kernel) / stride) + 1;

/** All axes but the channel axis (1): what BatchNorm reduces over. */
const statAxes = (x: Tensor) => x.shape.flatMap((_, i) => (i === 1 ? [] : [i]));
/** A per-channel vector [C] shaped to broadcast against x [N,C,...]. */
const perChannel = (v: Tensor, x: Tensor) => ops.reshape(v, x.shape.map((d, i) => (i === 1 ? d : 1)));
const count = (x: Tensor) => x.shape.reduce((a, d, i) => (i === 1 ? a : a * d), 1);

function checkChannelParams(op: string, ins: readonly Tensor[]): void {
  const [x, ...vectors] = ins;
  if (!isFloat(x.dtype) || x.shape.length < 2) fail(op, 'input must be a float tensor [N,C,...]', ins);
  const c = x.shape[1];
  if (vectors.some((v) => v.dtype !== x.dtype || v.shape.length !== 1 || v.shape[0] !== c)) {
    fail(op, `weight, bias and statistics must be [${c}] of the input's type`, ins);
  }
}

/** Zero-fills `x` at the end of `axis` up to `size` (what a floor-mode pool dropped). */
function padEnd(x: Tensor, axis: number, size: number): Tensor {
  const missing = size - x.shape[axis];
  if (missing === 0) return x;
  const shape = x.shape.map((d, i) => (i === axis ? missing : d));
  return ops.concat([x, ops.expand(x.graph.constant(0, [], x.dtype), shape)], axis);
}

export const convRules = {
  /** 2-D convolution without bias: x [N,C,H,W], w [O,C,k,k], square stride and zero padding. */
  conv2d: {
    infer(ins, a) {
      const [x, w] = ins;
      if (x.shape.length !== 4 || w.shape.length !== 4 || x.dtype !== w.dtype || !isFloat(x.dtype)) {
        fail('conv2d', 'needs float x [N,C,H,W] and weight [O,C,kh,kw] of one dtype', ins);
      }
      if (w.shape[1] !== x.shape[1]) fail('conv2d', `weight expects ${w.shape[1]} input channels, x has ${x.shape[1]}`, ins);
      const [h, wd] = [windows(x.shape[2], w.shape[2], a.stride, a.pad), windows(x.shape[3], w.shape[3], a.stride, a.pad)];
      if (!(h >= 1 && wd >= 1 && a.stride >= 1 && a.pad >= 0)) fail('conv2d', `stride ${a.stride} / padding ${a.pad} leave no output`, ins);
      return [{ dtype: x.dtype, shape: [x.shape[0], w.shape[0], h, wd] }];
    },
    emit: (g, [x, w], a, outs) =>
      g.node('Conv', [x, w], { kernel_shape: w.shape.slice(2), strides: [a.stride, a.stride], pads: [a.pad, a.pad, a.pad, a.pad] }, outs),
    vjp([x, w], [y], [g], a, need) {
      const gr = g!.graph;
      const [kh, kw] = w.shape.slice(2);
      const stride1 = a.stride === 1 && a.pad <= Math.min(kh, kw) - 1;
      let gx: Tensor | undefined;
      if (need[0] && stride1) {
        // A plain convolution with the transposed, spatially flipped kernel: about twice as fast as ConvTranspose on
        // the CPU EP. It reads only the weight, so inside a Loop the flip runs once, outside.
        const wt = ops.transpose(w, [1, 0, 2, 3]);
        const flipped = kh > 1 || kw > 1 ? ops.slice(wt, [kh - 1, kw - 1], [-kh - 1, -kw - 1], [2, 3], [-1, -1]) : wt;
        const [ph, pw] = [kh - 1 - a.pad, kw - 1 - a.pad];
        gx = gr.node('Conv', [g!, flipped], { kernel_shape: [kh, kw], pads: [ph, pw, ph, pw] }, [{ dtype: x.dtype, shape: [...x.shape] }])[0];
      } else if (need[0]) {
        // The transposed convolution with the same weight; output_padding restores rows a strided forward skipped.
        const extra = [2, 3].map((i) => x.shape[i] - ((y.shape[i] - 1) * a.stride + w.shape[i] - 2 * a.pad));
        gx = gr.node(
          'ConvTranspose',
          [g!, w],
          { kernel_shape: [kh, kw], strides: [a.stride, a.stride], pads: [a.pad, a.pad, a.pad, a.pad], output_padding: extra },
          [{ dtype: x.dtype, shape: [...x.shape] }],
        )[0];
      }
      let gw: Tensor | undefined;
      if (need[1] && stride1) {
        // dW[:,:,ky,kx] = g [O, N·H'·W'] x (x shifted by (ky,kx), channels last) [N·H'·W', C]: one large matrix
        // product per kernel tap (on the CPU EP about 2x faster than the convolution form below for 1x1, 1.5x for 3x3).
        const [n, c, h, wd] = x.shape;
        const [ho, wo] = y.shape.slice(2);
        const rows = n * ho * wo;
        const gFlat = ops.reshape(ops.transpose(g!, [1, 0, 2, 3]), [w.shape[0], rows]);
        let xl = ops.transpose(x, [0, 2, 3, 1]);
        if (a.pad > 0) {
          const p = a.pad;
          const zeros = (shape: number[]) => ops.expand(gr.constant(0, [], x.dtype), shape);
          xl = ops.concat([zeros([n, h, p, c]), xl, zeros([n, h, p, c])], 2);
          xl = ops.concat([zeros([n, p, wd + 2 * p, c]), xl, zeros([n, p, wd + 2 * p, c])], 1);
        }
        const taps: Tensor[] = [];
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const shifted = kh * kw === 1 ? xl : ops.slice(xl, [ky, kx], [ky + ho, kx + wo], [1, 2]);
            taps.push(ops.matmul(gFlat, ops.reshape(shifted, [rows, c])));
          }
        }
        // [O, C] per tap, taps in (ky, kx) order -> [O, C, kh, kw]
        gw = taps.length === 1 ? ops.reshape(taps[0], [...w.shape]) : ops.reshape(ops.concat(taps.map((t) => ops.unsqueeze(t, [2])), 2), [...w.shape]);
      } else if (need[1]) {
        // dW[o,c] = sum_n x[n,c] (*) g[n,o]: a convolution over the batch axis, with the forward stride as dilation.
        // End padding is cut to what the kernel reaches; anything past the kernel (odd sizes) is sliced off.
        const xt = ops.transpose(x, [1, 0, 2, 3]);
        const gt = ops.transpose(g!, [1, 0, 2, 3]);
        const ends = [2, 3].map((i) => Math.max(0, w.shape[i] - x.shape[i] - a.pad + a.stride * (y.shape[i] - 1)));
        const reach = [2, 3].map((i, j) => x.shape[i] + a.pad + ends[j] - a.stride * (y.shape[i] - 1));
        let full = gr.node(
          'Conv',
          [xt, gt],
          { kernel_shape: y.shape.slice(2), dilations: [a.stride, a.stride], pads: [a.pad, a.pad, ends[0], ends[1]] },
          [{ dtype: x.dtype, shape: [x.shape[1], w.shape[0], reach[0], reach[1]] }],
        )[0];
        if (reach[0] !== kh || reach[1] !== kw) full = ops.slice(full, [0, 0], [kh, kw], [2, 3]);
        gw = ops.transpose(full, [1, 0, 2, 3]);
      }
      return [gx, gw];
    },
  } satisfies Rule<ConvAttrs>,

  /**
   * Training-mode BatchNorm: inputs x [N,C,...], weight, bias; outputs y, the batch mean and the biased batch
   * variance (per channel). The statistics outputs feed running-statistics updates, never the loss: they carry no
   * gradient. The VJP is the full batch-norm backward (through the batch statistics).
   */
  batchNormTrain: {
    infer(ins) {
      checkChannelParams('batchNormTrain', ins);
      const [x] = ins;
      const stat: Spec = { dtype: x.dtype, shape: [x.shape[1]] };
      return [{ dtype: x.dtype, shape: [...x.shape] }, stat, { ...stat }];
    },
    emit(g: Graph, [x, w, b], a, [ySpec, statSpec]) {
      const axes = g.constant(BigInt64Array.from(statAxes(x), BigInt));
      const [mean] = g.node('ReduceMean', [x, axes], { keepdims: 0 }, [statSpec]);
      const shape = g.constant(BigInt64Array.from(x.shape, (d, i) => BigInt(i === 1 ? d : 1)));
      const [meanC] = g.node('Reshape', [mean, shape], {}, [{ dtype: x.dtype, shape: x.shape.map((d, i) => (i === 1 ? d : 1)) }]);
      const [centred] = g.node('Sub', [x, meanC], {}, [ySpec]);
      const [sq] = g.node('Mul', [centred, centred], {}, [ySpec]);
      const [variance] = g.node('ReduceMean', [sq, axes], { keepdims: 0 }, [statSpec]);
      // Inference-mode BatchNormalization fed with the batch statistics: one fused normalisation kernel.
      const [y] = g.node('BatchNormalization', [x, w, b, mean, variance], { epsilon: floatAttr(a.eps) }, [ySpec]);
      return [y, mean, variance];
    },
    vjp([x, w], [, mean, variance], [g, gMean, gVar], a, need) {
      if (gMean || gVar) throw new Error('batchNormTrain: the batch statistics outputs are not differentiable');
      const axes = statAxes(x);
      const rstd = ops.div(1, ops.sqrt(ops.add(variance, a.eps)));
      const xhat = ops.mul(ops.sub(x, perChannel(mean, x)), perChannel(rstd, x));
      const gb = ops.reduceSum(g!, axes);
      const gw = ops.reduceSum(ops.mul(g!, xhat), axes);
      let gx: Tensor | undefined;
      if (need[0]) {
        // dx = w rstd (g - mean(g) - xhat mean(g xhat))
        const n = count(x);
        const centred = ops.sub(g!, perChannel(ops.div(gb, n), x));
        gx = ops.mul(ops.sub(centred, ops.mul(xhat, perChannel(ops.div(gw, n), x))), perChannel(ops.mul(w, rstd), x));
      }
      return [gx, need[1] ? gw : undefined, need[2] ? gb : undefined];
    },
  } satisfies Rule<{ eps: number }>,

  /** Evaluation-mode BatchNorm: inputs x, weight, bias, running mean, running variance (the latter two get no gradient). */
  batchNormEval: {
    infer(ins) {
      checkChannelParams('batchNormEval', ins);
      return [{ dtype: ins[0].dtype, shape: [...ins[0].shape] }];
    },
    emit: (g, ins, a, outs) => g.node('BatchNormalization', [...ins], { epsilon: floatAttr(a.eps) }, outs),
    vjp([x, w, , mean, variance], _, [g], a, need) {
      const axes = statAxes(x);
      const rstd = ops.div(1, ops.sqrt(ops.add(variance, a.eps)));
      const gx = need[0] ? ops.mul(g!, perChannel(ops.mul(w, rstd), x)) : undefined;
      const gw = need[1] ? ops.reduceSum(ops.mul(g!, ops.mul(ops.sub(x, perChannel(mean, x)), perChannel(rstd, x))), axes) : undefined;
      return [gx, gw, need[2] ? ops.reduceSum(g!, axes) : undefined, undefined, undefined];
    },
  } satisfies Rule<{ eps: number }>,

  /** AvgPool2d(k): kernel = stride = k, no padding, floor mode (trailing rows/columns that do not fill a window are dropped). */
  avgPool2d: {
    infer(ins, a) {
      const [x] = ins;
      if (x.shape.length !== 4 || !isFloat(x.dtype)) fail('avgPool2d', 'needs a float tensor [N,C,H,W]', ins);
      const [h, w] = [Math.floor(x.shape[2] / a.kernel), Math.floor(x.shape[3] / a.kernel)];
      if (!(Number.isInteger(a.kernel) && a.kernel >= 1 && h >= 1 && w >= 1)) fail('avgPool2d', `kernel ${a.kernel} does not fit`, ins);
      return [{ dtype: x.dtype, shape: [x.shape[0], x.shape[1], h, w] }];
    },
    emit: (g, [x], a, outs) => g.node('AveragePool', [x], { kernel_shape: [a.kernel, a.kernel], strides: [a.kernel, a.kernel] }, outs),
    // Each input of a window gets 1/k² of the window's gradient; dropped rows/columns get 0.
    vjp([x], [y], [g], a) {
      const [n, c, h, w] = y.shape;
      const k = a.kernel;
      const spread = ops.expand(ops.reshape(ops.div(g!, k * k), [n, c, h, 1, w, 1]), [n, c, h, k, w, k]);
      return [padEnd(padEnd(ops.reshape(spread, [n, c, h * k, w * k]), 2, x.shape[2]), 3, x.shape[3])];
    },
  } satisfies Rule<{ kernel: number }>,
};
