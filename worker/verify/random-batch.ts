import type { Batch } from '../data/batch.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import type { Rng } from '../data/rng.ts';

/**
 * Random data shaped like a real batch, for benchmarks and engine tests: normal pixels (as after CLIP
 * normalisation) and token rows of random length: an SOT-like id, random ids, the largest id as EOT (so argmax
 * pooling finds it), then padding.
 */
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
