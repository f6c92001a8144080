import { CONTEXT_LENGTH } from '../../core/shard-format.ts';
import { normalizeHwcToChw } from '../../core/pixels.ts';
import { augmentImage, type AugmentOptions } from './augment.ts';
import type { Rng } from './rng.ts';
import type { Sample } from './shard-stream.ts';

/** One micro-batch from training samples: augmented uint8 HWC, then CLIP-normalised NCHW float32, plus tokens. */
/** One micro-batch: images normalised with CLIP mean/std, NCHW float32 [B,3,S,S]; tokens int32 [B,77]. */
export interface Batch {
  images: Float32Array;
  tokens: Int32Array;
}

export function makeBatch(samples: readonly Sample[], size: number, augment: AugmentOptions, rng: Rng): Batch {
  const n = samples.length;
  const pixelsPer = size * size * 3;
  const hwc = new Uint8Array(n * pixelsPer);
  const tokens = new Int32Array(n * CONTEXT_LENGTH);
  const augmenting = augment.randomResizedCrop || augment.dihedral;
  samples.forEach(({ shard, row }, i) => {
    if (shard.imageSize !== size) throw new Error(`shard image size ${shard.imageSize} differs from the model's ${size}`);
    const img = shard.captionImage[row]!;
    const src = shard.pixels.subarray(img * pixelsPer, (img + 1) * pixelsPer);
    const dst = hwc.subarray(i * pixelsPer, (i + 1) * pixelsPer);
    if (augmenting) augmentImage(src, size, augment, rng, dst);
    else dst.set(src);
    tokens.set(shard.tokens.subarray(row * CONTEXT_LENGTH, (row + 1) * CONTEXT_LENGTH), i * CONTEXT_LENGTH);
  });
  return { images: normalizeHwcToChw(hwc, n, size), tokens };
}
