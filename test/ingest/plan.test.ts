import { describe, expect, it } from 'vitest';
import { MAX_PLAN_ITEM_BYTES, planShards, type DatasetRow } from '../../core/dataset.ts';
import { hashSplit } from '../../core/dataset/rules.ts';

const row = (line: number, filename: string, caption = `caption ${line}`): DatasetRow => ({ line, filename, caption, split: 'train' });

describe('planShards', () => {
  it('keeps every row of an image in one shard and respects shardSize otherwise', () => {
    const rows = [row(2, 'a'), row(3, 'b'), row(4, 'a'), row(5, 'c'), row(6, 'c'), row(7, 'c'), row(8, 'd')];
    expect(planShards(rows, 3).map((s) => s.map((r) => r.line))).toEqual([[2, 4, 3], [5, 6, 7], [8]]);
    expect(planShards(rows, 2).map((s) => s.map((r) => r.line))).toEqual([[2, 4], [3], [5, 6, 7], [8]]);
  });

  it('keeps each plan item small enough for Step Functions state', () => {
    const rows = Array.from({ length: 256 }, (_, i) => row(i + 2, `img${i}.png`, 'x'.repeat(999)));
    const plan = planShards(rows, 256);
    expect(plan.length).toBeGreaterThan(1);
    for (const item of plan) expect(Buffer.byteLength(JSON.stringify(item))).toBeLessThanOrEqual(MAX_PLAN_ITEM_BYTES + 2);
    expect(plan.flat().map((r) => r.line)).toEqual(rows.map((r) => r.line));
  });
});

describe('hashSplit', () => {
  it('is deterministic and follows the fractions', () => {
    const names = Array.from({ length: 4000 }, (_, i) => `tiles/${i}.jpg`);
    const counts = { train: 0, val: 0, test: 0 };
    for (const n of names) counts[hashSplit(n)]++;
    expect(names.map((n) => hashSplit(n))).toEqual(names.map((n) => hashSplit(n)));
    expect(counts.train / names.length).toBeCloseTo(0.9, 1);
    expect(counts.val / names.length).toBeCloseTo(0.05, 1);
    expect(hashSplit('x', { train: 0, val: 1, test: 0 })).toBe('val');
  });
});
