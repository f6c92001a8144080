import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { generateDemoDataset } from '../../cli/demo-data/generate.ts';

const dirs: string[] = [];
const tmp = async (): Promise<string> => {
  const d = await mkdtemp(join(tmpdir(), 'rsclip-demo-data-'));
  dirs.push(d);
  return d;
};
afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

describe('generateDemoDataset', () => {
  it('writes decodable tiles and a captions.csv with 1-5 captions, label and a stratified split per tile', async () => {
    const dir = await tmp();
    const summary = await generateDemoDataset(dir, { perClass: 3, valPerClass: 1, testPerClass: 1, size: 32 });
    const rows = parse(await readFile(join(dir, 'captions.csv')), { columns: true }) as Record<string, string>[];
    expect(Object.keys(rows[0]!)).toEqual(['filename', 'caption', 'split', 'label']);
    expect(rows).toHaveLength(summary.captions);
    const byFile = new Map<string, Record<string, string>[]>();
    for (const r of rows) byFile.set(r.filename!, [...(byFile.get(r.filename!) ?? []), r]);
    expect(byFile.size).toBe(summary.images);
    expect(summary.images).toBe(3 * summary.labels.length);
    for (const [file, rs] of byFile) {
      expect(rs.length).toBeGreaterThanOrEqual(1);
      expect(rs.length).toBeLessThanOrEqual(5);
      expect(new Set(rs.map((r) => r.split)).size).toBe(1);
      expect(new Set(rs.map((r) => r.caption)).size).toBe(rs.length);
      const meta = await sharp(join(dir, file)).metadata();
      expect([meta.width, meta.height, meta.channels]).toEqual([32, 32, 3]);
    }
    // Tiles come in random order, not class by class (the worker shuffles within a shard only).
    const order = [...byFile.values()].map((rs) => rs[0]!.label);
    const changes = order.filter((l, i) => i > 0 && l !== order[i - 1]).length;
    expect(changes).toBeGreaterThan(summary.labels.length);
    for (const label of summary.labels) {
      const splits = [...byFile.values()].filter((rs) => rs[0]!.label === label).map((rs) => rs[0]!.split).sort();
      expect(splits).toEqual(['test', 'train', 'val']);
    }
  });

  it('is reproducible for a seed and differs across seeds', async () => {
    const [a, b, c] = [await tmp(), await tmp(), await tmp()];
    const opts = { perClass: 1, valPerClass: 1, testPerClass: 0, size: 16 };
    await generateDemoDataset(a, { ...opts, seed: 1 });
    await generateDemoDataset(b, { ...opts, seed: 1 });
    await generateDemoDataset(c, { ...opts, seed: 2 });
    const csv = (d: string): Promise<string> => readFile(join(d, 'captions.csv'), 'utf8');
    expect(await csv(a)).toBe(await csv(b));
    expect(await readFile(join(a, 'images/water-000.png'))).toEqual(await readFile(join(b, 'images/water-000.png')));
    expect(await readFile(join(a, 'images/water-000.png'))).not.toEqual(await readFile(join(c, 'images/water-000.png')));
  });
});
