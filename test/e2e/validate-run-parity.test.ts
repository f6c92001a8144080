import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runLocal } from '../../cli/commands/run.ts';
import validateCommand from '../../cli/commands/validate.ts';
import type { ValidationReport } from '../../core/dataset/types.ts';
import { png } from '../ingest/helpers/images.ts';

// `rsclip validate` reads a folder through FsStore, `rsclip run` uploads it to its S3 server first: what a folder
// holds beyond captions.csv's rows (hidden files, _tmp/, links, a BOM) must not change the verdict between them.
// A file of its own: one local pipeline per test process (the handlers keep their S3 client).

let root = '';
let image: Uint8Array;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'rsclip-parity-'));
  image = await png(8, 8, 3);
});
afterAll(async () => root && rm(root, { recursive: true, force: true }));
const quiet = (): void => undefined;
const TRAIN_JSON = '\uFEFF{"model": "ViT-tiny", "epochs": 1, "batchSize": 2}\n';

async function folder(name: string, captions: string, files: Record<string, Uint8Array | string> = {}): Promise<string> {
  const dir = join(root, name);
  const all: Record<string, Uint8Array | string> = { 'train.json': TRAIN_JSON, 'captions.csv': captions, ...files };
  for (let i = 0; i < 4; i++) all[`tiles/t${i}.png`] = image;
  for (const [k, v] of Object.entries(all)) {
    await mkdir(join(dir, k, '..'), { recursive: true });
    await writeFile(join(dir, k), v);
  }
  return dir;
}

async function validate(dir: string): Promise<ValidationReport> {
  const out: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  try {
    await validateCommand.run(['--data', dir, '--json']);
  } finally {
    vi.restoreAllMocks();
  }
  const text = out.join('\n');
  return JSON.parse(text.slice(text.indexOf('{'))) as ValidationReport;
}

/** runLocal's verdict: its validation.json, from --out on success and --out/failed otherwise. */
async function run(dir: string): Promise<ValidationReport> {
  const out = `${dir}-out`;
  const ok = await runLocal({ data: dir, model: 'random:ViT-tiny', out, log: quiet }).then(
    () => true,
    () => false,
  );
  const report = JSON.parse(await readFile(join(out, ok ? '' : 'failed', 'validation.json'), 'utf8')) as ValidationReport;
  expect(report.valid).toBe(ok);
  return report;
}

const ROWS = 'filename,caption,split\ntiles/t0.png,a farm,train\ntiles/t1.png,a lake,train\ntiles/t2.png,a road,val\ntiles/t3.png,a town,val\n';

describe('validate and run give a folder one verdict', () => {
  it('a train.json with a byte-order mark, a linked captions.csv, and hidden files and a _tmp/ folder that no row names: both valid', async () => {
    const dir = await folder('clutter', ROWS, { '.DS_Store': 'junk', 'tiles/._t0.png': 'AppleDouble', '.git/HEAD': 'ref', '_tmp/x.png': image });
    await writeFile(join(root, 'linked.csv'), ROWS);
    await rm(join(dir, 'captions.csv'));
    await symlink(join(root, 'linked.csv'), join(dir, 'captions.csv'));
    const v = await validate(dir);
    expect(v.problems).toEqual([]);
    expect(v.valid).toBe(true);
    const r = await run(dir);
    expect(r.problems).toEqual([]);
    expect(r.counts).toEqual(v.counts);
  }, 120_000);

  it('rows naming a hidden file, an AppleDouble file and a file under _tmp/: both refuse the same rows for the same reasons', async () => {
    const rows = `${ROWS}.hidden/x.png,hidden,train\ntiles/._t0.png,apple double,train\n_tmp/x.png,staged,train\n`;
    const dir = await folder('named', rows, { '.hidden/x.png': image, 'tiles/._t0.png': image, '_tmp/x.png': image });
    const v = await validate(dir);
    expect(v.valid).toBe(false);
    expect(v.problems.map((p) => [p.line, p.field, p.reason])).toEqual([
      [6, 'filename', expect.stringMatching(/hidden file or folder/)],
      [7, 'filename', expect.stringMatching(/hidden file or folder/)],
      [8, 'filename', expect.stringMatching(/under _tmp\//)],
    ]);
    expect((await run(dir)).problems).toEqual(v.problems);
  }, 120_000);
});
