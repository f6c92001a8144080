import type { Tensor } from '../engine/graph.ts';
import { add, concat, expand, layerNorm, matmul, reshape, slice, transpose } from '../engine/ops.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { vitDims } from '../../core/model-config/config.ts';
import type { ParamLookup, ParamSpec } from './spec.ts';
import { blockParams, transformer, type BlockDims } from './transformer.ts';

/** open_clip VisionTransformer (class-token pooling, ln_pre, no layer scale, no patch dropout). */
export function vitParams(cfg: ClipModelConfig): ParamSpec[] {
  const d = vitDims(cfg);
  const scale = d.width ** -0.5;
  const patchFanIn = 3 * d.patch * d.patch;
  const specs: ParamSpec[] = [
    { name: 'visual.class_embedding', shape: [d.width], init: { normal: scale } },
    { name: 'visual.positional_embedding', shape: [d.tokens, d.width], init: { normal: scale } },
    { name: 'visual.proj', shape: [d.width, cfg.embed_dim], init: { normal: scale } },
    { name: 'visual.conv1.weight', shape: [d.width, 3, d.patch, d.patch], init: { uniform: 1 / Math.sqrt(patchFanIn) } },
    { name: 'visual.ln_pre.weight', shape: [d.width], init: { fill: 1 } },
    { name: 'visual.ln_pre.bias', shape: [d.width], init: { fill: 0 } },
  ];
  // open_clip leaves the vision blocks at torch's module defaults: xavier-uniform in_proj, kaiming-uniform Linear.
  const blockInit = {
    inProj: { uniform: Math.sqrt(6 / (4 * d.width)) },
    outProj: { uniform: 1 / Math.sqrt(d.width) },
    fc: { uniform: 1 / Math.sqrt(d.width) },
    proj: { uniform: 1 / Math.sqrt(d.mlp) },
  };
  for (let i = 0; i < d.layers; i++) specs.push(...blockParams(`visual.transformer.resblocks.${i}`, blockDims(cfg), blockInit));
  specs.push(
    { name: 'visual.ln_post.weight', shape: [d.width], init: { fill: 1 } },
    { name: 'visual.ln_post.bias', shape: [d.width], init: { fill: 0 } },
  );
  return specs;
}

function blockDims(cfg: ClipModelConfig): BlockDims {
  const d = vitDims(cfg);
  return { width: d.width, heads: d.heads, mlp: d.mlp, quickGelu: cfg.quick_gelu ?? false };
}

/** encode_image: [N,3,S,S] normalised pixels -> [N, embed_dim] unnormalised features. */
export function encodeImageVit(cfg: ClipModelConfig, P: ParamLookup<Tensor>, images: Tensor): Tensor {
  const d = vitDims(cfg);
  const n = images.shape[0];
  // conv1 has kernel = stride = patch, so it is a matmul over non-overlapping patches in (c, ky, kx) order.
  const patches = reshape(
    transpose(reshape(images, [n, 3, d.grid, d.patch, d.grid, d.patch]), [0, 2, 4, 1, 3, 5]),
    [n, d.grid * d.grid, 3 * d.patch * d.patch],
  );
  const kernel = transpose(reshape(P('visual.conv1.weight'), [d.width, 3 * d.patch * d.patch]), [1, 0]);
  const embedded = matmul(patches, kernel);
  const cls = expand(reshape(P('visual.class_embedding'), [1, 1, d.width]), [n, 1, d.width]);
  let x = add(concat([cls, embedded], 1), P('visual.positional_embedding'));
  x = layerNorm(x, P('visual.ln_pre.weight'), P('visual.ln_pre.bias'));
  x = transformer(P, 'visual.transformer', x, d.layers, blockDims(cfg));
  x = layerNorm(x, P('visual.ln_post.weight'), P('visual.ln_post.bias'));
  const pooled = reshape(slice(x, [0], [1], [1]), [n, d.width]);
  return matmul(pooled, P('visual.proj'));
}
