import type { Tensor } from '../engine/graph.ts';
import { add, argmax, cast, gather, layerNorm, matmul, reshape } from '../engine/ops.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { textDims } from '../../core/model-config/config.ts';
import type { ParamLookup, ParamSpec } from './spec.ts';
import { blockParams, transformer, type BlockDims } from './transformer.ts';

/** open_clip TextTransformer (causal mask, argmax pooling, projection without bias) and its init_parameters(). */
export function textParams(cfg: ClipModelConfig): ParamSpec[] {
  const d = textDims(cfg);
  const projStd = d.width ** -0.5 * (2 * d.layers) ** -0.5;
  const blockInit = {
    inProj: { normal: d.width ** -0.5 },
    outProj: { normal: projStd },
    fc: { normal: (2 * d.width) ** -0.5 },
    proj: { normal: projStd },
  };
  const specs: ParamSpec[] = [
    { name: 'positional_embedding', shape: [d.context, d.width], init: { normal: 0.01 } },
    { name: 'text_projection', shape: [d.width, cfg.embed_dim], init: { normal: d.width ** -0.5 } },
  ];
  for (let i = 0; i < d.layers; i++) specs.push(...blockParams(`transformer.resblocks.${i}`, blockDims(cfg), blockInit));
  specs.push(
    { name: 'token_embedding.weight', shape: [d.vocab, d.width], init: { normal: 0.02 } },
    { name: 'ln_final.weight', shape: [d.width], init: { fill: 1 } },
    { name: 'ln_final.bias', shape: [d.width], init: { fill: 0 } },
  );
  return specs;
}

function blockDims(cfg: ClipModelConfig): BlockDims {
  const d = textDims(cfg);
  return { width: d.width, heads: d.heads, mlp: d.mlp, quickGelu: cfg.quick_gelu ?? false };
}

/** Additive causal mask: -inf above the diagonal over all positions (no padding mask, as open_clip). */
export function causalMask(context: number): Float32Array {
  const m = new Float32Array(context * context);
  for (let i = 0; i < context; i++) for (let j = i + 1; j < context; j++) m[i * context + j] = -Infinity;
  return m;
}

/** encode_text: int64 token ids [N, context] -> [N, embed_dim] unnormalised features. */
export function encodeText(cfg: ClipModelConfig, P: ParamLookup<Tensor>, tokens: Tensor): Tensor {
  const d = textDims(cfg);
  const n = tokens.shape[0];
  const g = tokens.graph;
  let x = add(gather(P('token_embedding.weight'), tokens, 0), P('positional_embedding'));
  x = transformer(P, 'transformer', x, d.layers, blockDims(cfg), g.constant(causalMask(d.context), [d.context, d.context]));
  x = layerNorm(x, P('ln_final.weight'), P('ln_final.bias'));
  // Pool at the first position of the largest id (the EOT token); ids < 2^24 are exact in float32.
  const eot = argmax(cast(tokens, 'float32'), 1);
  const rowStart = g.constant(BigInt64Array.from({ length: n }, (_, i) => BigInt(i * d.context)), [n], 'int64');
  const flat = reshape(x, [n * d.context, d.width]);
  const pooled = gather(flat, add(eot, rowStart), 0);
  return matmul(pooled, P('text_projection'));
}
