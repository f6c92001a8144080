/**
 * A small seeded PRNG (xoshiro128**) whose whole state is four uint32s, so a checkpoint can save it and a
 * resumed run continues the exact same sequence. Streams are derived from (seed, ...salt) with splitmix32,
 * so independent streams (shard order per epoch, sample order per shard, augmentation) need no shared state.
 */
export type RngState = [number, number, number, number];

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) >>> 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;

export class Rng {
  private s: RngState;

  private constructor(state: RngState) {
    if (state.every((v) => v === 0)) throw new Error('Rng: the all-zero state is invalid');
    this.s = [...state];
  }

  /** A stream for `seed` and any number of integer salts (epoch, shard index, ...). */
  static fromSeed(seed: number, ...salt: number[]): Rng {
    let h = splitmix32(seed >>> 0);
    // Mix the high bits of large seeds too.
    h = splitmix32(h ^ Math.floor(seed / 2 ** 32));
    for (const v of salt) h = splitmix32(h ^ (v >>> 0));
    const state: RngState = [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) {
      h = splitmix32(h + i);
      state[i] = h;
    }
    return new Rng(state);
  }

  static fromState(state: readonly number[]): Rng {
    if (state.length !== 4 || state.some((v) => !Number.isInteger(v) || v < 0 || v > 0xffffffff)) {
      throw new Error(`Rng: bad saved state ${JSON.stringify(state)}`);
    }
    return new Rng(state as RngState);
  }

  state(): RngState {
    return [...this.s];
  }

  /** Next uint32. */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] = (s[2] ^ s[0]) >>> 0;
    s[3] = (s[3] ^ s[1]) >>> 0;
    s[1] = (s[1] ^ s[2]) >>> 0;
    s[0] = (s[0] ^ s[3]) >>> 0;
    s[2] = (s[2] ^ t) >>> 0;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  float(): number {
    const hi = this.next() >>> 5;
    const lo = this.next() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Standard normal (Box-Muller; the second value is not kept, so the state stays four words). */
  normal(): number {
    const u = 1 - this.float();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.float());
  }

  /** Uniform integer in [0, n), without modulo bias. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 0x100000000) throw new Error(`Rng.int: bad bound ${n}`);
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.next();
      if (x < limit) return x % n;
    }
  }

  /** Fisher-Yates permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i]!;
      p[i] = p[j]!;
      p[j] = t;
    }
    return p;
  }
}
