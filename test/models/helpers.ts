import type { Batch, ClipModelConfig, OptimizerHyper } from '../../worker/engine/api.ts';
import { parseModelConfig } from '../../worker/models/config.ts';
import { Rng } from '../../worker/data/rng.ts';

/** A small ViT CLIP unlike the fixture: QuickGELU, 3 vision heads, 16-pixel patches, short context, small vocab. */
export const variantConfig: ClipModelConfig = parseModelConfig(
  {
    embed_dim: 16,
    quick_gelu: true,
    vision_cfg: { image_size: 32, patch_size: 16, width: 24, layers: 2, head_width: 8, mlp_ratio: 2 },
    text_cfg: { context_length: 12, vocab_size: 100, width: 16, heads: 2, layers: 1 },
  },
  'variantConfig',
);

export const hyper: OptimizerHyper = { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.2, gradClip: 1 };

/** Random normalised-looking pixels and token rows: SOT-like id, random ids, the largest id as EOT, padding. */
export function randomBatch(rng: Rng, cfg: ClipModelConfig, n: number): Batch {
  const s = cfg.vision_cfg.image_size;
  const c = cfg.text_cfg.context_length;
  const vocab = cfg.text_cfg.vocab_size;
  const images = Float32Array.from({ length: n * 3 * s * s }, () => rng.normal());
  const tokens = new Int32Array(n * c);
  for (let i = 0; i < n; i++) {
    const len = 3 + Math.floor(rng.float() * (c - 3));
    tokens[i * c] = vocab - 2;
    for (let j = 1; j < len - 1; j++) tokens[i * c + j] = 1 + Math.floor(rng.float() * (vocab - 3));
    tokens[i * c + len - 1] = vocab - 1;
  }
  return { images, tokens };
}

export function concatBatches(bs: Batch[]): Batch {
  const images = new Float32Array(bs.reduce((a, b) => a + b.images.length, 0));
  const tokens = new Int32Array(bs.reduce((a, b) => a + b.tokens.length, 0));
  let i = 0;
  let t = 0;
  for (const b of bs) {
    images.set(b.images, i);
    tokens.set(b.tokens, t);
    i += b.images.length;
    t += b.tokens.length;
  }
  return { images, tokens };
}
