import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Bytes of a file in test/fixtures (kept inside the repository). */
export function fixtureBytes(rel: string): Uint8Array {
  return new Uint8Array(readFileSync(fileURLToPath(new URL(`../fixtures/${rel}`, import.meta.url))));
}

export function fixtureJson<T>(rel: string): T {
  return JSON.parse(Buffer.from(fixtureBytes(rel)).toString('utf8')) as T;
}

/** The float32 bit patterns of a tensor's values, for bit-exact comparisons (NaN-safe, -0 aware). */
export const bitsOf = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);
