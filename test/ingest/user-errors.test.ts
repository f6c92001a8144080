import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import validateCommand from '../../cli/commands/validate.ts';
import type { ValidationReport } from '../../core/dataset/types.ts';
import { png } from './helpers/images.ts';

// Issue 15 item 5: each bad input `rsclip validate` meets is one problem line naming the file and reason, and exit 1.

let root = '';
let image: Uint8Array;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'rsclip-user-errors-'));
  image = await png(8, 8, 3);
});
afterAll(async () => root && rm(root, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

/** A folder with a.png and b.png and `files` over them. */
async function dataset(name: string, files: Record<string, Uint8Array | string>): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const all = { 'a.png': image, 'b.png': image, 'captions.csv': 'filename,caption\na.png,a farm\nb.png,a lake\n', ...files };
  for (const [k, v] of Object.entries(all)) {
    await mkdir(join(dir, k, '..'), { recursive: true });
    await writeFile(join(dir, k), v);
  }
  return dir;
}

/** `rsclip validate --data dir --json`: its exit code and report. */
async function validate(dir: string): Promise<{ code: number; report: ValidationReport }> {
  const out: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const code = await validateCommand.run(['--data', dir, '--json']);
  vi.restoreAllMocks();
  const text = out.join('\n');
  return { code, report: JSON.parse(text.slice(text.indexOf('{'))) as ValidationReport };
}

describe('rsclip validate on bad train.json options', () => {
  it('refuses split fractions that are all zero as a train.json problem, not an exception', async () => {
    const dir = await dataset('zero-split', { 'train.json': '{"split": {"train": 0, "val": 0, "test": 0}}' });
    const { code, report } = await validate(dir);
    expect(code).toBe(1);
    expect(report.problems).toEqual([{ file: 'train.json', field: 'split', reason: expect.stringMatching(/^the fractions must not all be zero/) }]);
  });

  it('refuses a freeze pattern that is not a regular expression, naming the option and its index', async () => {
    const dir = await dataset('bad-freeze', { 'train.json': '{"freeze": ["visual\\\\.conv1", "("]}' });
    const { code, report } = await validate(dir);
    expect(code).toBe(1);
    expect(report.problems).toEqual([{ file: 'train.json', field: 'freeze.1', reason: expect.stringMatching(/^"\(" is not a valid regular expression \(.*Unterminated group\)$/) }]);
  });
});

describe('rsclip validate on train.json text', () => {
  it('reads a byte-order mark as captions.csv does, and reports broken JSON on one line', async () => {
    const bom = await dataset('bom-options', { 'train.json': '\uFEFF{"epochs": 1}' });
    expect((await validate(bom)).report.problems).toEqual([]);
    const broken = await dataset('broken-options', { 'train.json': '{\n  "epochs": x\n}\n' });
    const { code, report } = await validate(broken);
    expect(code).toBe(1);
    expect(report.problems).toEqual([{ file: 'train.json', field: 'file', reason: expect.stringMatching(/^not valid JSON \(/) }]);
    expect(report.problems[0]!.reason).not.toMatch(/\n/);
  });
});

describe('rsclip validate on UTF-16 text', () => {
  const CSV = 'filename,caption\na.png,a farm\nb.png,a lake\n';
  const be = (text: string): Buffer => Buffer.from(text, 'utf16le').swap16();

  it.each([
    ['little-endian with a byte-order mark', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(CSV, 'utf16le')]), /^UTF-16 \(little-endian, byte-order mark FF FE\)/],
    ['big-endian with a byte-order mark', Buffer.concat([Buffer.from([0xfe, 0xff]), be(CSV)]), /^UTF-16 \(big-endian, byte-order mark FE FF\)/],
    ['little-endian without one', Buffer.from(CSV, 'utf16le'), /^UTF-16 \(little-endian, NUL bytes every other byte\)/],
    ['big-endian without one', be(CSV), /^UTF-16 \(big-endian, NUL bytes every other byte\)/],
  ])('says a captions.csv in UTF-16 %s is UTF-16, in one problem', async (_, bytes, encoding) => {
    const dir = await dataset(`utf16-${bytes[0]}-${bytes[1]}`, { 'captions.csv': bytes });
    const { code, report } = await validate(dir);
    expect(code).toBe(1);
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]).toMatchObject({ file: 'captions.csv', field: 'file' });
    expect(report.problems[0]!.reason.replace(/^captions\.csv is /, '')).toMatch(encoding);
    expect(report.summary).toMatch(/: save it as UTF-8$/);
  });

  it('says the same of a UTF-16 train.json', async () => {
    const dir = await dataset('utf16-options', { 'train.json': Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"epochs": 1}', 'utf16le')]) });
    expect((await validate(dir)).report.problems).toEqual([
      { file: 'train.json', field: 'file', reason: 'UTF-16 (little-endian, byte-order mark FF FE): save it as UTF-8' },
    ]);
  });
});

describe('rsclip validate on a filename in another Unicode normalization form', () => {
  it("names the form in which the folder holds a name that is 'not found' as written", async () => {
    const nfc = 'caf\u00e9.png';
    const nfd = 'cafe\u0301.png';
    const dir = await dataset('unicode-forms', {
      [nfd]: image,
      [`t\u00e9.png`]: image,
      'captions.csv': `filename,caption\na.png,a farm\n${nfc},a cafe roof\nte\u0301.png,a tea field\nmissing-\u00e9.png,nothing\n`,
    });
    const { code, report } = await validate(dir);
    expect(code).toBe(1);
    expect(report.problems.map((p) => [p.line, p.reason])).toEqual([
      [3, expect.stringMatching(/^image not found in the dataset folder as written, but it holds the name in Unicode NFD, /)],
      [4, expect.stringMatching(/^image not found in the dataset folder as written, but it holds the name in Unicode NFC, /)],
      [5, 'image not found in the dataset folder'],
    ]);
  });
});

describe('rsclip validate on a folder with symbolic links', () => {
  it('follows links to captions.csv, to images and to folders, skips a link back into its own folder, and changes none of them', async () => {
    const elsewhere = await dataset('link-targets', { 'tiles/c.png': image, 'captions.csv': 'filename,caption\na.png,a farm\nb.png,a lake\ntiles/c.png,a road\n' });
    const dir = await dataset('links', {});
    await rm(join(dir, 'captions.csv'));
    await rm(join(dir, 'b.png'));
    await symlink(join(elsewhere, 'captions.csv'), join(dir, 'captions.csv'));
    await symlink(join(elsewhere, 'b.png'), join(dir, 'b.png'));
    await symlink(join(elsewhere, 'tiles'), join(dir, 'tiles'));
    await symlink('.', join(elsewhere, 'tiles', 'loop'));
    const { code, report } = await validate(dir);
    expect(report.problems).toEqual([]);
    expect(code).toBe(0);
    expect(report.counts).toMatchObject({ rows: 3, goodRows: 3, images: 3 });
    expect(await readlink(join(dir, 'captions.csv'))).toBe(join(elsewhere, 'captions.csv'));
    expect(await readFile(join(elsewhere, 'captions.csv'), 'utf8')).toBe('filename,caption\na.png,a farm\nb.png,a lake\ntiles/c.png,a road\n');
  });
});
