import type { ClipModelConfig } from '../engine/api.ts';
import { numel, type StateDict } from '../tensor.ts';
import { clipBuffers, clipParams } from './clip.ts';
import type { Init } from './spec.ts';

/** A small seeded generator (xoshiro128**): the same seed gives the same weights on every platform. */
export class Rng {
  private s: Uint32Array;
  private spare: number | undefined;

  constructor(seed: number) {
    // splitmix32 expands the seed into four non-zero state words.
    this.s = new Uint32Array(4);
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** Uniform in [0, 1) with 32 random bits. */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result / 4294967296;
  }

  /** Standard normal (Box-Muller, both values used). */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    const u = 1 - this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    const a = 2 * Math.PI * this.next();
    this.spare = r * Math.sin(a);
    return r * Math.cos(a);
  }
}

const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;

function fill(data: Float32Array, init: Init, rng: Rng): void {
  if ('fill' in init) data.fill(init.fill);
  else if ('normal' in init) for (let i = 0; i < data.length; i++) data[i] = init.normal * rng.normal();
  else for (let i = 0; i < data.length; i++) data[i] = (2 * rng.next() - 1) * init.uniform;
}

/** A randomly initialised model with open_clip's initialisation rules (distributions, not torch's exact stream). */
export function initParams(config: ClipModelConfig, seed: number): StateDict {
  const rng = new Rng(seed);
  const out: StateDict = new Map();
  for (const spec of [...clipParams(config), ...clipBuffers(config)]) {
    const data = new Float32Array(numel(spec.shape));
    fill(data, spec.init, rng);
    out.set(spec.name, { shape: spec.shape, data });
  }
  return out;
}
