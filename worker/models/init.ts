import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { numel, type StateDict } from '../../core/tensors/tensor.ts';
import { clipBuffers, clipParams } from './clip.ts';
import type { Init } from './spec.ts';
import { Rng } from '../data/rng.ts';

function fill(data: Float32Array, init: Init, rng: Rng): void {
  if ('fill' in init) data.fill(init.fill);
  else if ('normal' in init) for (let i = 0; i < data.length; i++) data[i] = init.normal * rng.normal();
  else for (let i = 0; i < data.length; i++) data[i] = rng.uniform(-1, 1) * init.uniform;
}

/** A randomly initialised model with open_clip's initialisation rules (distributions, not torch's exact stream). */
export function initParams(config: ClipModelConfig, seed: number): StateDict {
  const rng = Rng.fromSeed(seed);
  const out: StateDict = new Map();
  for (const spec of [...clipParams(config), ...clipBuffers(config)]) {
    const data = new Float32Array(numel(spec.shape));
    fill(data, spec.init, rng);
    out.set(spec.name, { shape: spec.shape, data });
  }
  return out;
}
