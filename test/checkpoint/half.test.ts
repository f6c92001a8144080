import { describe, expect, it } from 'vitest';
import { bf16ToF32, f16ToF32 } from '../../core/tensors/half.ts';
import { bitsOf } from './fixtures.ts';
import { toBf16, toF16 } from './half-encode.ts';

describe('half-precision widening', () => {
  it('decodes IEEE half bit patterns exactly (normals, subnormals, zeros, inf, nan)', () => {
    const bits = Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x03ff, 0x8000, 0x7c00, 0xfc00, 0x3555]);
    const want = [1, -2, 65504, 2 ** -14, 2 ** -24, 1023 * 2 ** -24, -0, Infinity, -Infinity, (1024 + 0x155) * 2 ** -12];
    expect(Array.from(f16ToF32(bits))).toEqual(want);
    expect(Number.isNaN(f16ToF32(Uint16Array.from([0x7e00]))[0])).toBe(true);
  });

  it('decodes bfloat16 as the top half of a float32', () => {
    expect(Array.from(bf16ToF32(Uint16Array.from([0x3f80, 0xc060, 0x0001, 0x7f80])))).toEqual([1, -3.5, 2 ** -133, Infinity]);
  });

  it('inverts the test encoders on every finite half and bfloat16 value', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const finiteHalf = all.filter((b) => (b & 0x7c00) !== 0x7c00);
    const same = (a: Uint16Array, b: Uint16Array): number => Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer));
    expect(same(toF16(f16ToF32(finiteHalf)), finiteHalf)).toBe(0);
    const finiteBf = all.filter((b) => (b & 0x7f80) !== 0x7f80);
    expect(same(toBf16(bf16ToF32(finiteBf)), finiteBf)).toBe(0);
    expect(bitsOf(f16ToF32(toF16([0.1])))[0]).toBe(bitsOf(Float32Array.from([0.0999755859375]))[0]);
  });
});
