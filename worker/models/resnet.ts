/**
 * open_clip's ModifiedResNet image tower (RN50, RN101, RemoteCLIP-RN50): a 3-convolution stem with an average pool,
 * four stages of Bottleneck blocks with anti-aliasing average pools instead of strided convolutions, and
 * AttentionPool2d. BatchNorm runs in training mode (batch statistics, running statistics updated and returned) or
 * evaluation mode (running statistics).
 */
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { Tensor } from '../engine/graph.ts';
import { add, concat, div, matmul, mul, reduceMean, relu, reshape, slice, softmax, transpose } from '../engine/ops.ts';
import { avgPool2d, batchNormEval, batchNormTrain, conv2d } from '../engine/ops-conv.ts';
import type { ParamLookup, ParamSpec } from './spec.ts';
import { linear } from './transformer.ts';

const EXPANSION = 4;
const BN_EPS = 1e-5;
const BN_MOMENTUM = 0.1;

/** Derived sizes with open_clip's defaults (head_width 64): heads = 32·width / head_width. */
export function resnetDims(cfg: ClipModelConfig) {
  const v = cfg.vision_cfg;
  const layers = v.layers as number[];
  const embed = v.width * 32;
  const headWidth = v.head_width ?? 64;
  if (v.image_size % 32 !== 0) throw new Error(`ModifiedResNet: image_size ${v.image_size} is not a multiple of 32`);
  if (embed % headWidth !== 0) throw new Error(`ModifiedResNet: 32·width = ${embed} is not a multiple of head_width ${headWidth}`);
  const grid = v.image_size / 32;
  return { width: v.width, layers, embed, heads: embed / headWidth, headWidth, grid, tokens: grid * grid + 1, output: cfg.embed_dim };
}

interface Block {
  prefix: string;
  inplanes: number;
  planes: number;
  stride: number;
  downsample: boolean;
  /** `visual.layerI` on the last block of stage I (whose output is that stage's output). */
  stageEnd?: string;
}

/** The Bottleneck blocks in order: stage i has planes width·2^i, its first block strides by 2 from stage 2 on. */
function blocks(cfg: ClipModelConfig): Block[] {
  const d = resnetDims(cfg);
  const out: Block[] = [];
  let inplanes = d.width;
  d.layers.forEach((count, stage) => {
    const planes = d.width * 2 ** stage;
    for (let j = 0; j < count; j++) {
      const stride = j === 0 && stage > 0 ? 2 : 1;
      out.push({
        prefix: `visual.layer${stage + 1}.${j}`,
        inplanes,
        planes,
        stride,
        downsample: stride > 1 || inplanes !== planes * EXPANSION,
        stageEnd: j === count - 1 ? `visual.layer${stage + 1}` : undefined,
      });
      inplanes = planes * EXPANSION;
    }
  });
  return out;
}

/** A convolution weight with torch's default init (kaiming-uniform with a = sqrt 5: bound 1/sqrt(fan_in)). */
const convSpec = (name: string, out: number, inp: number, k: number): ParamSpec => ({
  name: `${name}.weight`,
  shape: [out, inp, k, k],
  init: { uniform: 1 / Math.sqrt(inp * k * k) },
});

const bnSpecs = (name: string, c: number, zeroGain = false): ParamSpec[] => [
  { name: `${name}.weight`, shape: [c], init: { fill: zeroGain ? 0 : 1 } },
  { name: `${name}.bias`, shape: [c], init: { fill: 0 } },
];

/** Every (convolution, BatchNorm) pair of the tower in state-dict order, with channel counts. */
function convBnPairs(cfg: ClipModelConfig): { conv: string; bn: string; in: number; out: number; k: number; zeroGain: boolean }[] {
  const w = resnetDims(cfg).width;
  const pairs = [
    { conv: 'visual.conv1', bn: 'visual.bn1', in: 3, out: w / 2, k: 3, zeroGain: false },
    { conv: 'visual.conv2', bn: 'visual.bn2', in: w / 2, out: w / 2, k: 3, zeroGain: false },
    { conv: 'visual.conv3', bn: 'visual.bn3', in: w / 2, out: w, k: 3, zeroGain: false },
  ];
  for (const b of blocks(cfg)) {
    const p = b.prefix;
    pairs.push(
      { conv: `${p}.conv1`, bn: `${p}.bn1`, in: b.inplanes, out: b.planes, k: 1, zeroGain: false },
      { conv: `${p}.conv2`, bn: `${p}.bn2`, in: b.planes, out: b.planes, k: 3, zeroGain: false },
      // open_clip zero-initialises every Bottleneck's last BatchNorm gain.
      { conv: `${p}.conv3`, bn: `${p}.bn3`, in: b.planes, out: b.planes * EXPANSION, k: 1, zeroGain: true },
    );
    if (b.downsample) pairs.push({ conv: `${p}.downsample.0`, bn: `${p}.downsample.1`, in: b.inplanes, out: b.planes * EXPANSION, k: 1, zeroGain: false });
  }
  return pairs;
}

/** Trained entries (open_clip names and init_parameters()). */
export function resnetParams(cfg: ClipModelConfig): ParamSpec[] {
  const d = resnetDims(cfg);
  const specs = convBnPairs(cfg).flatMap((p) => [convSpec(p.conv, p.out, p.in, p.k), ...bnSpecs(p.bn, p.out, p.zeroGain)]);
  const std = d.embed ** -0.5;
  const proj = (name: string, out: number): ParamSpec[] => [
    { name: `visual.attnpool.${name}.weight`, shape: [out, d.embed], init: { normal: std } },
    { name: `visual.attnpool.${name}.bias`, shape: [out], init: { uniform: 1 / Math.sqrt(d.embed) } },
  ];
  specs.push(
    { name: 'visual.attnpool.positional_embedding', shape: [d.tokens, d.embed], init: { normal: std } },
    ...proj('k_proj', d.embed),
    ...proj('q_proj', d.embed),
    ...proj('v_proj', d.embed),
    ...proj('c_proj', d.output),
  );
  return specs;
}

/** BatchNorm buffers: running_mean 0, running_var 1, num_batches_tracked 0 (a float32 count here). */
export function resnetBuffers(cfg: ClipModelConfig): ParamSpec[] {
  return convBnPairs(cfg).flatMap(({ bn, out }) => [
    { name: `${bn}.running_mean`, shape: [out], init: { fill: 0 } },
    { name: `${bn}.running_var`, shape: [out], init: { fill: 1 } },
    { name: `${bn}.num_batches_tracked`, shape: [], init: { fill: 0 } },
  ]);
}

/** Intermediate values a conformance check compares (`debug.*` names of the reference folders). */
export type Tap = (name: string, t: Tensor) => void;

/**
 * encode_image: [N,3,S,S] normalised pixels -> [N, embed_dim] unnormalised features. With `train`, BatchNorm uses
 * batch statistics and the new running statistics come back in `buffers`; otherwise it uses the running ones.
 */
export function encodeImageResnet(
  cfg: ClipModelConfig,
  P: ParamLookup<Tensor>,
  images: Tensor,
  train: boolean,
  tap: Tap = () => {},
): { features: Tensor; buffers: Map<string, Tensor> } {
  const d = resnetDims(cfg);
  const buffers = new Map<string, Tensor>();
  const bn = (name: string, x: Tensor): Tensor => {
    const [w, b] = [P(`${name}.weight`), P(`${name}.bias`)];
    const rm = P(`${name}.running_mean`);
    const rv = P(`${name}.running_var`);
    if (!train) return batchNormEval(x, w, b, rm, rv, BN_EPS);
    const { y, mean, variance } = batchNormTrain(x, w, b, BN_EPS);
    tap(`${name}.batch_mean`, mean);
    tap(`${name}.batch_var`, variance);
    // torch updates the running variance with the unbiased batch variance (n / (n-1)).
    const n = x.shape[0] * x.shape[2] * x.shape[3];
    buffers.set(`${name}.running_mean`, add(mul(rm, 1 - BN_MOMENTUM), mul(mean, BN_MOMENTUM)));
    const unbiased = mul(variance, n / (n - 1));
    tap(`${name}.batch_var_unbiased`, unbiased);
    buffers.set(`${name}.running_var`, add(mul(rv, 1 - BN_MOMENTUM), mul(unbiased, BN_MOMENTUM)));
    buffers.set(`${name}.num_batches_tracked`, add(P(`${name}.num_batches_tracked`), 1));
    return y;
  };
  const convBn = (conv: string, norm: string, x: Tensor, pad: number, stride = 1) =>
    bn(norm, conv2d(x, P(`${conv}.weight`), { stride, pad }));

  let x = relu(convBn('visual.conv1', 'visual.bn1', images, 1, 2));
  x = relu(convBn('visual.conv2', 'visual.bn2', x, 1));
  x = relu(convBn('visual.conv3', 'visual.bn3', x, 1));
  x = avgPool2d(x, 2);
  tap('visual.stem_out', x);
  for (const b of blocks(cfg)) {
    const p = b.prefix;
    let out = relu(convBn(`${p}.conv1`, `${p}.bn1`, x, 0));
    out = relu(convBn(`${p}.conv2`, `${p}.bn2`, out, 1));
    // Anti-aliased downsampling: the convolutions keep stride 1, an average pool strides.
    if (b.stride > 1) out = avgPool2d(out, b.stride);
    out = convBn(`${p}.conv3`, `${p}.bn3`, out, 0);
    const identity = b.downsample ? convBn(`${p}.downsample.0`, `${p}.downsample.1`, b.stride > 1 ? avgPool2d(x, b.stride) : x, 0) : x;
    x = relu(add(out, identity));
    if (b.stageEnd) tap(`${b.stageEnd}.out`, x);
  }
  const features = attentionPool(d, P, x, tap);
  return { features, buffers };
}

/**
 * AttentionPool2d: the spatial grid as tokens, their mean prepended, positional embedding added, multi-head attention
 * with separate q/k/v projections; the output is token 0 through c_proj. Only token 0's query is computed.
 */
function attentionPool(d: ReturnType<typeof resnetDims>, P: ParamLookup<Tensor>, x: Tensor, tap: Tap): Tensor {
  const [n, c, h, w] = x.shape;
  if (c !== d.embed || h * w + 1 !== d.tokens) throw new Error(`AttentionPool2d: input [${x.shape}] does not match a ${d.grid}x${d.grid} grid of ${d.embed}`);
  const ap = (name: string) => P(`visual.attnpool.${name}`);
  const grid = transpose(reshape(x, [n, c, h * w]), [0, 2, 1]);
  const tokens = add(concat([reduceMean(grid, [1], true), grid], 1), ap('positional_embedding'));
  tap('visual.attnpool.tokens', tokens);
  const t = d.tokens;
  const hd = d.headWidth;
  const query = linear(slice(tokens, [0], [1], [1]), ap('q_proj.weight'), ap('q_proj.bias'));
  // torch 1.13 divides q by sqrt(head_dim) (not a multiplication by its inverse: sqrt 32 is not a power of two).
  const q = transpose(reshape(div(query, Math.sqrt(hd)), [n, 1, d.heads, hd]), [0, 2, 1, 3]);
  const k = transpose(reshape(linear(tokens, ap('k_proj.weight'), ap('k_proj.bias')), [n, t, d.heads, hd]), [0, 2, 3, 1]);
  const v = transpose(reshape(linear(tokens, ap('v_proj.weight'), ap('v_proj.bias')), [n, t, d.heads, hd]), [0, 2, 1, 3]);
  const weights = softmax(matmul(q, k), -1);
  tap('visual.attnpool.attn_weights_token0', reshape(weights, [n, d.heads, t]));
  const merged = reshape(matmul(weights, v), [n, d.embed]);
  const out = linear(merged, ap('c_proj.weight'), ap('c_proj.bias'));
  tap('visual.attnpool.out', out);
  return out;
}
