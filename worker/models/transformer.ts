import type { Tensor } from '../engine/graph.ts';
import {
  add,
  gelu,
  layerNorm,
  matmul,
  mul,
  quickGelu,
  reshape,
  softmax,
  split,
  transpose,
} from '../engine/ops.ts';
import type { Init, ParamLookup, ParamSpec } from './spec.ts';

/** open_clip's ResidualAttentionBlock sizes; `act` follows the config's quick_gelu. */
export interface BlockDims {
  width: number;
  heads: number;
  mlp: number;
  quickGelu: boolean;
}

/** Initialisers of one block's weights; biases and LayerNorms follow torch's module defaults. */
export interface BlockInit {
  inProj: Init;
  outProj: Init;
  fc: Init;
  proj: Init;
}

export function blockParams(prefix: string, d: BlockDims, init: BlockInit): ParamSpec[] {
  const { width: w, mlp } = d;
  return [
    { name: `${prefix}.ln_1.weight`, shape: [w], init: { fill: 1 } },
    { name: `${prefix}.ln_1.bias`, shape: [w], init: { fill: 0 } },
    { name: `${prefix}.attn.in_proj_weight`, shape: [3 * w, w], init: init.inProj },
    { name: `${prefix}.attn.in_proj_bias`, shape: [3 * w], init: { fill: 0 } },
    { name: `${prefix}.attn.out_proj.weight`, shape: [w, w], init: init.outProj },
    { name: `${prefix}.attn.out_proj.bias`, shape: [w], init: { fill: 0 } },
    { name: `${prefix}.ln_2.weight`, shape: [w], init: { fill: 1 } },
    { name: `${prefix}.ln_2.bias`, shape: [w], init: { fill: 0 } },
    { name: `${prefix}.mlp.c_fc.weight`, shape: [mlp, w], init: init.fc },
    { name: `${prefix}.mlp.c_fc.bias`, shape: [mlp], init: { uniform: 1 / Math.sqrt(w) } },
    { name: `${prefix}.mlp.c_proj.weight`, shape: [w, mlp], init: init.proj },
    { name: `${prefix}.mlp.c_proj.bias`, shape: [w], init: { uniform: 1 / Math.sqrt(mlp) } },
  ];
}

/** torch.nn.Linear: x @ W^T + b. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const y = matmul(x, transpose(weight, [1, 0]));
  return bias ? add(y, bias) : y;
}

/** nn.MultiheadAttention (batch-first view, stacked q/k/v projection, q scaled by 1/sqrt(head_dim)). */
function attention(P: ParamLookup<Tensor>, prefix: string, x: Tensor, heads: number, mask?: Tensor): Tensor {
  const [n, t, w] = x.shape;
  const hd = w / heads;
  const qkv = linear(x, P(`${prefix}.in_proj_weight`), P(`${prefix}.in_proj_bias`));
  const [q, k, v] = split(qkv, [w, w, w], 2).map((y: Tensor) => transpose(reshape(y, [n, t, heads, hd]), [0, 2, 1, 3]));
  let scores = matmul(mul(q, 1 / Math.sqrt(hd)), transpose(k, [0, 1, 3, 2]));
  if (mask) scores = add(scores, mask);
  const out = matmul(softmax(scores, -1), v);
  const merged = reshape(transpose(out, [0, 2, 1, 3]), [n, t, w]);
  return linear(merged, P(`${prefix}.out_proj.weight`), P(`${prefix}.out_proj.bias`));
}

/** ResidualAttentionBlock: x + attn(ln_1(x)), then + mlp(ln_2(x)). */
export function residualBlock(P: ParamLookup<Tensor>, prefix: string, x: Tensor, d: BlockDims, mask?: Tensor): Tensor {
  const h = add(x, attention(P, `${prefix}.attn`, layerNorm(x, P(`${prefix}.ln_1.weight`), P(`${prefix}.ln_1.bias`)), d.heads, mask));
  const hidden = linear(layerNorm(h, P(`${prefix}.ln_2.weight`), P(`${prefix}.ln_2.bias`)), P(`${prefix}.mlp.c_fc.weight`), P(`${prefix}.mlp.c_fc.bias`));
  const act = d.quickGelu ? quickGelu(hidden) : gelu(hidden);
  return add(h, linear(act, P(`${prefix}.mlp.c_proj.weight`), P(`${prefix}.mlp.c_proj.bias`)));
}

export function transformer(P: ParamLookup<Tensor>, prefix: string, x: Tensor, layers: number, d: BlockDims, mask?: Tensor): Tensor {
  for (let i = 0; i < layers; i++) x = residualBlock(P, `${prefix}.resblocks.${i}`, x, d, mask);
  return x;
}
