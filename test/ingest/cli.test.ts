import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { UserError } from '../../cli/command.ts';
import shardCommand from '../../cli/commands/shard.ts';
import validateCommand from '../../cli/commands/validate.ts';
import type { ValidationReport } from '../../core/dataset/types.ts';
import { preprocessImage } from '../../core/preprocess/index.ts';
import { decodeShard } from '../../core/shard-format.ts';
import { png } from './helpers/images.ts';

let good: string;
let bad: string;

beforeAll(async () => {
  const root = await mkdtemp(join(tmpdir(), 'rsclip-ingest-cli-'));
  good = join(root, 'good');
  bad = join(root, 'bad');
  for (const dir of [good, bad]) await mkdir(join(dir, 'tiles'), { recursive: true });
  for (let i = 0; i < 4; i++) await writeFile(join(good, 'tiles', `t${i}.png`), await png(12, 9, 3, i));
  await writeFile(join(good, 'captions.csv'), 'filename,caption\ntiles/t0.png,a farm\ntiles/t1.png,a lake\ntiles/t2.png,a road\ntiles/t3.png,a town\ntiles/t0.png,green fields\n');
  await writeFile(join(good, 'train.json'), '{"model": "ViT-tiny", "split": {"train": 1, "val": 0, "test": 0}}');
  await writeFile(join(bad, 'captions.csv'), 'filename,caption\ntiles/none.png,a farm\n');
});

function capture(): { out: () => string; err: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  return { out: () => out.join('\n'), err: () => err.join('\n') };
}
afterEach(() => vi.restoreAllMocks());

describe('rsclip validate', () => {
  it('exits 0 for a valid folder and 1 for an invalid one, with the JSON report under --json', async () => {
    const io = capture();
    expect(await validateCommand.run(['--data', good])).toBe(0);
    expect(io.out()).toMatch(/^valid: 5 rows, 4 images valid/);
    expect(await validateCommand.run(['--data', bad, '--json'])).toBe(1);
    const report = JSON.parse(io.out().slice(io.out().indexOf('{'))) as ValidationReport;
    expect(report.valid).toBe(false);
    expect(report.problems).toEqual([{ file: 'captions.csv', line: 2, field: 'filename', reason: 'image not found in the dataset folder' }]);
  });

  it('turns bad flags into UserErrors', async () => {
    await expect(validateCommand.run([])).rejects.toBeInstanceOf(UserError);
    await expect(validateCommand.run(['--data', good, '--nope'])).rejects.toBeInstanceOf(UserError);
  });

  it('prints one line and no stack trace from the real CLI', async () => {
    const run = promisify(execFile);
    const res = await run('npx', ['tsx', 'cli/main.ts', 'validate', '--data', join(bad, 'missing')]).catch((e: { code: number; stdout: string; stderr: string }) => e);
    expect((res as { code?: number }).code).toBe(1);
    expect(res.stdout).toMatch(/INVALID: captions\.csv not found/);
    expect(res.stderr + res.stdout).not.toMatch(/\n\s+at /);
  });
});

describe('rsclip shard', () => {
  it('writes decodable shards and validation.json to --out', async () => {
    const out = await mkdtemp(join(tmpdir(), 'rsclip-ingest-shards-'));
    const io = capture();
    expect(await shardCommand.run(['--data', good, '--out', out, '--size', '8'])).toBe(0);
    expect(io.out()).toMatch(/wrote 1 shards \(5 rows, 4 images, 8px\)/);
    const s = decodeShard(await readFile(join(out, 'shard-00000.rsshard')), 'cli shard');
    expect(s.imageIds).toEqual(['tiles/t0.png', 'tiles/t1.png', 'tiles/t2.png', 'tiles/t3.png']);
    // Rows keep their CSV order within a shard; each image is stored once.
    expect(Array.from(s.lines)).toEqual([2, 3, 4, 5, 6]);
    expect(JSON.parse(await readFile(join(out, 'index.json'), 'utf8')).shards).toEqual([{ name: 'shard-00000.rsshard', split: 'train', rows: 5, images: 4 }]);
    const want = await preprocessImage(await readFile(join(good, 'tiles', 't2.png')), { size: 8 });
    expect(Buffer.from(s.pixels.subarray(2 * 8 * 8 * 3, 3 * 8 * 8 * 3)).equals(Buffer.from(want))).toBe(true);
    expect(JSON.parse(await readFile(join(out, 'validation.json'), 'utf8')).valid).toBe(true);
    expect(await shardCommand.run(['--data', bad, '--out', out])).toBe(1);
  });
});
