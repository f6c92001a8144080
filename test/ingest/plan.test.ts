import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BucketCounts, bucketOf, cutShards, PlanSpill, readPlanRows } from '../../core/dataset/plan.ts';
import { hashSplit } from '../../core/dataset/rules.ts';
import type { DatasetRow } from '../../core/dataset/types.ts';
import { FsStore } from '../../core/store.ts';

const row = (line: number, filename: string, split: DatasetRow['split'] = 'train'): DatasetRow => ({ line, filename, caption: `caption ${line}`, split });

/** The plan of `rows` as Validate writes it: counted, cut, spilled every `spillBytes`. */
async function plan(rows: DatasetRow[], shardSize: number, spillBytes: number) {
  const counts = new BucketCounts();
  for (const r of rows) counts.add(r.split, r.filename);
  const cuts = cutShards(counts, shardSize);
  const store = new FsStore(mkdtempSync(join(tmpdir(), 'plan-')));
  const spill = new PlanSpill(store, 'p', cuts.shards.length, spillBytes);
  for (const r of rows) await spill.add(cuts.shardOf[r.split][bucketOf(r.filename)]!, r);
  const parts = await spill.finish();
  const shards = await Promise.all(cuts.shards.map(async (s, i) => ({ ...s, rows: await readPlanRows(store, parts[i]!), part: parts[i]! })));
  return { shards, objects: (await store.list('p')).map((o) => o.key), keys: new Set(parts.map((p) => p.key)) };
}

describe('the shard plan', () => {
  it('puts every caption of an image in one shard of its split wherever the rows are, near shardSize, and loses no row', async () => {
    const rows: DatasetRow[] = [];
    // 3,000 images with 1-5 captions each, the captions of an image scattered over the CSV.
    for (let i = 0; i < 3000; i++) rows.push(row(0, `img${i}.jpg`, hashSplit(`img${i}.jpg`)));
    for (let i = 0; i < 3000; i++) for (let k = 0; k < i % 5; k++) rows.push(row(0, `img${(i * 7919) % 3000}.jpg`, hashSplit(`img${(i * 7919) % 3000}.jpg`)));
    rows.forEach((r, i) => (r.line = i + 2));
    // 20 kB spills: over 40 of them, merged in two levels (32 at a time) into one object.
    const { shards, objects, keys } = await plan(rows, 64, 20_000);
    expect(objects).toHaveLength(1);
    expect([...keys]).toEqual(objects);
    const shardOfImage = new Map<string, number>();
    for (const [i, s] of shards.entries()) {
      for (const r of s.rows) {
        expect(r.split).toBe(s.split);
        expect(shardOfImage.get(r.filename) ?? i).toBe(i);
        shardOfImage.set(r.filename, i);
      }
      // Rows of a shard stay in CSV order across spills and merges.
      expect(s.rows.map((r) => r.line)).toEqual([...s.rows.map((r) => r.line)].sort((a, b) => a - b));
      expect(s.rows.length).toBeLessThanOrEqual(64);
    }
    expect(shards.flatMap((s) => s.rows.map((r) => r.line)).sort((a, b) => a - b)).toEqual(rows.map((r) => r.line));
    const train = shards.filter((s) => s.split === 'train');
    // Cut at bucket boundaries: shards are full but for the last of each split and a few cuts.
    expect(train.reduce((n, s) => n + s.rows.length, 0) / train.length).toBeGreaterThan(48);
    expect(shards.map((s) => s.split)).toEqual([...train.map(() => 'train'), ...shards.filter((s) => s.split !== 'train').map((s) => s.split)]);
  });

  it('gives an image with more captions than shardSize a shard of its own, and refuses parts past the end', async () => {
    const rows = [...Array.from({ length: 10 }, (_, i) => row(i + 2, 'big.png')), row(12, 'small.png')];
    const { shards } = await plan(rows, 4, 1 << 20);
    const big = shards.find((s) => s.rows.some((r) => r.filename === 'big.png'))!;
    expect(big.rows.map((r) => r.filename)).toEqual(Array(10).fill('big.png'));
    const store = new FsStore(mkdtempSync(join(tmpdir(), 'plan-')));
    await store.put('p/rows-0000.jsonl', `${JSON.stringify(row(2, 'a.png'))}\n`);
    await expect(readPlanRows(store, { key: 'p/rows-0000.jsonl', start: 0, end: 4096 })).rejects.toThrow(/past the end of the plan part/);
    const hostile = `${JSON.stringify(row(2, '../a.png'))}\n`;
    await store.put('p/rows-0001.jsonl', hostile);
    await expect(readPlanRows(store, { key: 'p/rows-0001.jsonl', start: 0, end: hostile.length })).rejects.toThrow(/bad plan row: filename: filename escapes the dataset folder/);
    await expect(readPlanRows(store, { key: 'p/rows-0001.jsonl', start: 0, end: 20 })).rejects.toThrow(/rows-0001\.jsonl: bad plan row: not JSON/);
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
