import { Rng as Stream } from '../../worker/data/rng.ts';

/** A seeded uniform [0, 1) source, so the demo dataset is the same on every machine. */
export type Rng = () => number;

export function makeRng(seed: number): Rng {
  const stream = Stream.fromSeed(seed);
  return () => stream.float();
}

export const uniform = (rng: Rng, lo: number, hi: number): number => lo + (hi - lo) * rng();
export const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
export const intIn = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
