import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../core/buffer-pool.ts';

describe('BufferPool', () => {
  it('hands a released buffer out again, zeroed, for any size up to its own', () => {
    const pool = new BufferPool();
    const a = pool.take(1000);
    a.fill(9);
    pool.release(a);
    const b = pool.take(600);
    expect(b.buffer).toBe(a.buffer);
    expect(b.length).toBe(600);
    expect(b.every((v) => v === 0)).toBe(true);
    // The bytes past the new length still hold the old contents: callers see only their n bytes.
    expect(new Uint8Array(a.buffer)[700]).toBe(9);
  });

  it('never gives one buffer to two holders, and keeps the largest released', () => {
    const pool = new BufferPool();
    const a = pool.take(100);
    const b = pool.take(100);
    expect(b.buffer).not.toBe(a.buffer);
    const big = pool.take(5000);
    pool.release(big);
    pool.release(a);
    expect(pool.take(4000).buffer).toBe(big.buffer);
    expect(pool.take(4000).buffer).not.toBe(big.buffer);
    pool.release(b);
    expect(pool.take(10_000).buffer).not.toBe(b.buffer);
  });
});
