import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkDataset } from '../../core/dataset/check.ts';
import { readPlanRows } from '../../core/dataset/plan.ts';
import type { ShardRequest, ShardSummary, ValidationReport } from '../../core/dataset/types.ts';
import { preprocessImage } from '../../core/preprocess/index.ts';
import { captionsKey, shardPlanKey, shardsPrefix, shardSummaryName, validationKey } from '../../core/s3-layout.ts';
import { handlerS3Client } from '../../core/s3-client.ts';
import { decodeShard } from '../../core/shard-format.ts';
import { SHARD_INDEX_FILE, type ShardIndexFile } from '../../core/shard-index.ts';
import { FsStore, type ObjectStore } from '../../core/store.ts';
import { tokenize } from '../../core/tokenizer/index.ts';
import { jpeg, png, pngClaiming } from './helpers/images.ts';
import { checksums, putAll, startS3 } from './helpers/s3.ts';

const BUCKET = 'ingest-test';
let s3: Awaited<ReturnType<typeof startS3>>;
let store: ObjectStore;
// Imported after the environment points the SDK at the loopback server: the handlers build their client at load.
let validate: typeof import('../../lambdas/validate/handler.ts').handler;
let shard: typeof import('../../lambdas/shard/handler.ts').handler;
let collect: typeof import('../../lambdas/collect/handler.ts').handler;

beforeAll(async () => {
  s3 = await startS3(BUCKET);
  store = s3.store;
  validate = (await import('../../lambdas/validate/handler.ts')).handler;
  shard = (await import('../../lambdas/shard/handler.ts')).handler;
  collect = (await import('../../lambdas/collect/handler.ts')).handler;
});
afterAll(async () => s3?.stop());

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const cat = (...parts: (Uint8Array | string)[]): Uint8Array => Buffer.concat(parts.map((p) => (typeof p === 'string' ? enc(p) : p)));

const json = async <T>(key: string): Promise<T> => JSON.parse(new TextDecoder().decode(await store.get(key))) as T;
const planOf = (key: string): Promise<ShardRequest[]> => json<ShardRequest[]>(key);
const rowsOf = (item: ShardRequest) => readPlanRows(store, item.part);

/** Validate, every Shard item and Collect, as the state machine runs them; the error of the step that failed. */
async function runPipeline(dataset: string, runId: string): Promise<{ error?: Error; report: ValidationReport; summaries: ShardSummary[] }> {
  const summaries: ShardSummary[] = [];
  let error: Error | undefined;
  try {
    const v = await validate({ bucket: BUCKET, key: captionsKey(dataset), runId });
    for (const item of await planOf(v.planKey)) {
      await shard(item);
      summaries.push(await json<ShardSummary>(`${shardsPrefix(runId)}/${shardSummaryName(item.shard)}`));
    }
    await collect({ bucket: BUCKET, runId, dataset, shards: v.shards });
  } catch (e) {
    error = e as Error;
  }
  return { error, report: await json<ValidationReport>(validationKey(runId)), summaries };
}

async function runValidate(dataset: string, runId: string): Promise<{ error?: Error; report: ValidationReport }> {
  let error: Error | undefined;
  try {
    await validate({ bucket: BUCKET, key: captionsKey(dataset), runId });
  } catch (e) {
    error = e as Error;
  }
  const report = JSON.parse(new TextDecoder().decode(await store.get(validationKey(runId)))) as ValidationReport;
  return { error, report };
}

describe('Validate handler and the whole check on a corpus of bad inputs', () => {
  let report: ValidationReport;
  let error: Error | undefined;
  let validated: ValidationReport;
  let before: Record<string, string>;

  beforeAll(async () => {
    const good = { 'good1.png': await png(8, 6, 3, 1), 'good2.png': await png(6, 6, 1, 2), 'dir/good3.png': await png(5, 9, 4, 3) };
    const jpg = await jpeg(16, 16);
    const rows = [
      'filename,caption,split,label', // 1
      'good1.png,a field,train,farm', // 2  ok
      'good2.png,"a road, with cars",train,road', // 3  ok
      '../etc/passwd,escape,train,x', // 4
      '/abs/path.png,absolute,train,x', // 5
      'https://evil.example/x.png,url,train,x', // 6
      'sub\\win.png,backslash,train,x', // 7
      'good1.png,   ,train,farm', // 8
      `good1.png,${'long '.repeat(201)},train,farm`, // 9
      'missing.png,not there,train,x', // 10
      'good1.png,a field,train,farm', // 11
      'text.png,not an image,train,x', // 12
      'trunc.jpg,truncated,train,x', // 13
      'bomb.png,bomb,train,x', // 14
      'good2.png,another caption,val,road', // 15
      'dir/good3.png,weird split,holdout,x', // 16
      'dir/good3.png,too,many,fields,here', // 17
      'dir/good3.png', // 18
      'good2.png,third caption,train,lake', // 19
      'C:/windows/x.png,drive,train,x', // 20
      'vector.svg,svg,train,x', // 21
      'a//b.png,double slash,train,x', // 22
      '"",empty filename,train,x', // 23
      'dir/good3.png,quote "inside" bad,train,x', // 24
      'empty.png,zero bytes,train,x', // 25
      'garbage.jpg,jpeg header then noise,train,x', // 26
      'bad\u0001name.png,control character,train,x', // 27
      'dir/good3.png,a lake,train,lake', // 28 ok
      'dir/../good1.png,sneaky,train,x', // 29
      'http:x.png,scheme,train,x', // 30
    ];
    const csv = cat(rows.join('\n'), '\ndir/good3.png,Stra', Uint8Array.of(0xdf), 'e,train,x\n', 'good1.png,"never closed,train,x\n');
    await putAll(store, 'datasets/corpus', {
      ...good,
      'captions.csv': csv,
      'text.png': 'this is not a png',
      'trunc.jpg': jpg.subarray(0, jpg.length - 40),
      'bomb.png': await pngClaiming(100_000, 100_000),
      'vector.svg': '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
      'empty.png': new Uint8Array(0),
      'garbage.jpg': cat(Uint8Array.of(0xff, 0xd8, 0xff, 0xe0), new Uint8Array(300).fill(7)),
    });
    before = await checksums(store, 'datasets/');
    ({ report: validated, error } = await runValidate('corpus', 'corpus-run'));
    // What `rsclip validate` reports: the same steps with the images decoded even though the CSV already failed.
    ({ report } = await checkDataset(store.child('datasets/corpus'), 'corpus', new FsStore(mkdtempSync(join(tmpdir(), 'corpus-'))), { always: true, discardShards: true }));
  });

  const expectProblem = (line: number, field: string, reason: RegExp): void => {
    const hits = report.problems.filter((p) => p.line === line);
    expect(hits, `line ${line}: ${JSON.stringify(hits)}`).toContainEqual(expect.objectContaining({ file: 'captions.csv', field, reason: expect.stringMatching(reason) }));
  };

  it('fails the run at Validate with DatasetInvalid and a one-line cause, having read no image', () => {
    expect(error?.name).toBe('DatasetInvalid');
    expect(error!.message).not.toContain('\n');
    expect(error!.message).toMatch(/^23 of 31 rows are bad: captions\.csv line 4 filename: filename escapes the dataset folder \('\.\.'\); captions\.csv line 5 filename: .*; \+20 more$/);
    expect(validated).toMatchObject({ valid: false, checked: 'captions', counts: { rows: 31, goodRows: 8, badRows: 23 } });
    // Unreadable images are the Shard step's to find.
    expect(validated.problems.filter((p) => [12, 13, 14, 21, 26].includes(p.line!))).toEqual([]);
  });

  it('finds every problem once the images are decoded too', () => {
    expect(report).toMatchObject({ valid: false, checked: 'images', counts: { rows: 31, goodRows: 3, badRows: 28 } });
    expect(report.summary).toMatch(/^28 of 31 rows are bad: .*; \+25 more$/);
  });

  it.each([
    [4, 'filename', /escapes the dataset folder/],
    [5, 'filename', /absolute path/],
    [6, 'filename', /URL/],
    [7, 'filename', /backslash/],
    [8, 'caption', /empty or whitespace-only caption/],
    [9, 'caption', /caption is 1005 characters, over the limit of 1000/],
    [10, 'filename', /image not found/],
    [11, 'caption', /duplicate of line 2/],
    [12, 'filename', /not a readable image/],
    [13, 'filename', /cannot decode image/],
    [14, 'filename', /100000 x 100000 = 10000000000 pixels, over the limit/],
    [15, 'split', /image is 'train' on line 3 but 'val' here/],
    [16, 'split', /unknown split 'holdout'/],
    [17, 'row', /expected 4 fields, found 5/],
    [18, 'row', /expected 4 fields, found 1/],
    [19, 'label', /labelled 'road' on line 3 but 'lake' here/],
    [20, 'filename', /URL or drive path/],
    [21, 'filename', /unsupported image format 'svg'/],
    [22, 'filename', /empty or '\.' path segment/],
    [23, 'filename', /empty filename/],
    [24, 'row', /malformed quoting/],
    [25, 'filename', /image file is empty/],
    [26, 'filename', /not a readable image|cannot decode/],
    [27, 'filename', /control characters/],
    [29, 'filename', /escapes the dataset folder/],
    [30, 'filename', /URL/],
    [31, 'row', /not valid UTF-8/],
    [32, 'row', /unterminated quote/],
  ])('line %i: %s %s', (line, field, reason) => expectProblem(line, field, reason));

  it('accepts the good rows', () => {
    for (const line of [2, 3, 28]) expect(report.problems.filter((p) => p.line === line)).toEqual([]);
  });

  it("leaves the user's objects byte-identical", async () => {
    expect(await checksums(store, 'datasets/')).toEqual(before);
  });
});

describe('Validate handler: file-level problems and policies', () => {
  it('rejects a missing column at line 1', async () => {
    await putAll(store, 'datasets/nocap', { 'captions.csv': 'filename,text\na.png,x\n', 'a.png': await png(4, 4, 3) });
    const { error, report } = await runValidate('nocap', 'nocap-run');
    expect(error?.name).toBe('DatasetInvalid');
    expect(report.problems).toContainEqual(expect.objectContaining({ line: 1, field: 'caption', reason: expect.stringMatching(/missing column 'caption'/) }));
    expect(report.problems).toContainEqual(expect.objectContaining({ line: 1, field: 'text', reason: expect.stringMatching(/unknown column/) }));
  });

  it('rejects an empty captions.csv and a bad train.json', async () => {
    await putAll(store, 'datasets/empty', { 'captions.csv': '' });
    expect((await runValidate('empty', 'empty-run')).report.problems[0]).toMatchObject({ line: 1, field: 'header' });
    await putAll(store, 'datasets/badopts', { 'captions.csv': 'filename,caption\na.png,x\n', 'a.png': await png(4, 4, 3), 'train.json': '{"model": "ViT-B-32", "lr": -1}' });
    const { report } = await runValidate('badopts', 'badopts-run');
    expect(report.problems).toContainEqual(expect.objectContaining({ file: 'train.json', field: 'lr' }));
    await putAll(store, 'datasets/badmodel', { 'captions.csv': 'filename,caption\na.png,x\n', 'a.png': await png(4, 4, 3), 'train.json': '{"model": "../../etc/passwd"}' });
    expect((await runValidate('badmodel', 'badmodel-run')).report.problems).toContainEqual(
      expect.objectContaining({ file: 'train.json', field: 'model', reason: expect.stringMatching(/unknown model/) }),
    );
  });

  it('writes validation.json naming train.json split when its fractions are all zero, instead of throwing while splitting', async () => {
    await putAll(store, 'datasets/zerosplit', { 'captions.csv': 'filename,caption\na.png,x\n', 'a.png': await png(4, 4, 3), 'train.json': '{"split": {"train": 0, "val": 0, "test": 0}}' });
    const { error, report } = await runValidate('zerosplit', 'zerosplit-run');
    expect(error?.name).toBe('DatasetInvalid');
    expect(error?.message).toMatch(/train\.json split: the fractions must not all be zero/);
    expect(report.valid).toBe(false);
    expect(report.problems).toContainEqual({ file: 'train.json', field: 'split', reason: expect.stringMatching(/must not all be zero/) });
  });

  it('finds the one bad line at the end of a 10,000-row CSV', async () => {
    const lines = ['filename,caption'];
    for (let i = 0; i < 9_999; i++) lines.push(`img${i % 4}.png,caption number ${i}`);
    lines.push('img0.png,');
    const images = Object.fromEntries(await Promise.all([0, 1, 2, 3].map(async (i) => [`img${i}.png`, await png(4, 4, 3, i)] as const)));
    await putAll(store, 'datasets/big', { ...images, 'captions.csv': `${lines.join('\r\n')}\r\n` });
    const { error, report } = await runValidate('big', 'big-run');
    expect(error?.message).toMatch(/^1 of 10000 rows are bad: captions\.csv line 10001 caption: empty or whitespace-only caption$/);
    expect(report.problems).toEqual([{ file: 'captions.csv', line: 10001, field: 'caption', reason: 'empty or whitespace-only caption' }]);
  });

  it("skips bad rows under policy 'skip' while under maxBadFraction, and fails above it", async () => {
    const rows = ['\uFEFFfilename,caption,split'];
    for (let i = 0; i < 19; i++) rows.push(`p${i}.png,photo ${i},train`);
    rows.push('gone.png,missing image,train');
    const images = Object.fromEntries(await Promise.all(Array.from({ length: 19 }, async (_, i) => [`p${i}.png`, await png(4, 4, 3, i)] as const)));
    const files = { ...images, 'captions.csv': rows.join('\n') };
    await putAll(store, 'datasets/skip', { ...files, 'train.json': '{"validation": {"policy": "skip", "maxBadFraction": 0.1}}' });
    const ok = await validate({ bucket: BUCKET, key: captionsKey('skip'), runId: 'skip-run' });
    expect(ok).toMatchObject({ rows: 19, images: 19, shards: 1, imageSize: 224, planKey: shardPlanKey('skip-run') });
    const plan = await planOf(ok.planKey);
    expect((await rowsOf(plan[0]!)).map((r) => r.line)).not.toContain(21);
    await putAll(store, 'datasets/skip2', { ...files, 'train.json': '{"validation": {"policy": "skip", "maxBadFraction": 0.01}}' });
    expect((await runValidate('skip2', 'skip2-run')).error?.name).toBe('DatasetInvalid');
  });
});

describe('Validate handler: the captions.csv version that started the run', () => {
  it('reads captions.csv at the run\'s version id and everything else at its current version', async () => {
    await putAll(store, 'datasets/pinned', { 'a.png': await png(4, 4, 3), 'captions.csv': 'filename,caption\na.png,a field\n' });
    const requests: { command: string; key: string; versionId?: string }[] = [];
    const client = handlerS3Client();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Key?: string; VersionId?: string };
        if (input.Key?.startsWith('datasets/pinned/')) requests.push({ command: context.commandName!, key: input.Key, versionId: input.VersionId });
        return next(args);
      },
      { step: 'initialize', name: 'recordVersionIds' },
    );
    try {
      // The loopback server keeps no versions and serves the current object for any version id.
      await validate({ bucket: BUCKET, key: captionsKey('pinned'), runId: 'pinned-run', versionId: 'v-42' });
    } finally {
      client.middlewareStack.remove('recordVersionIds');
    }
    const captions = requests.filter((r) => r.key === captionsKey('pinned'));
    // Two streaming passes (rules, then the plan) and the size check.
    expect(captions.map((r) => r.command).sort()).toEqual(['GetObjectCommand', 'GetObjectCommand', 'HeadObjectCommand']);
    expect(captions.every((r) => r.versionId === 'v-42')).toBe(true);
    const others = requests.filter((r) => r.key !== captionsKey('pinned'));
    expect(others.length).toBeGreaterThan(0);
    expect(others.every((r) => r.versionId === undefined)).toBe(true);
  });
});

describe('Shard handler', () => {
  it('writes shards whose decoded content equals preprocessImage and tokenize of the sources, idempotently', async () => {
    const files: Record<string, Uint8Array> = {
      'a.png': await png(40, 30, 3, 1),
      'b.png': await png(17, 18, 4, 2),
      'c/grey.png': await png(100, 37, 1, 3),
      'd.jpg': await jpeg(50, 58, 4),
    };
    const csv = [
      'filename,caption,split,label',
      'a.png,"fields, and a river",train,farm',
      'b.png,a bridge over the water & 3 boats,train,bridge',
      'a.png,"two ""tennis"" courts",train,farm',
      'c/grey.png,Straße neben dem Flughafen,val,',
      'd.jpg,a dense residential area,test,town',
    ].join('\n');
    await putAll(store, 'datasets/rt', { ...files, 'captions.csv': csv, 'train.json': '{"model": "ViT-tiny", "shardSize": 2}' });
    const before = await checksums(store, 'datasets/');
    const out = await validate({ bucket: BUCKET, key: captionsKey('rt'), runId: 'rt-run' });
    expect(out).toMatchObject({ rows: 5, images: 4, imageSize: 32, shards: 4 });
    const plan = await planOf(out.planKey);
    // Both captions of a.png travel together even though shardSize is 2, and each shard holds one split.
    const planned = await Promise.all(plan.map(async (p) => ({ split: p.split, lines: (await rowsOf(p)).map((r) => r.line) })));
    expect(planned.sort((x, y) => x.lines[0]! - y.lines[0]!)).toEqual([
      { split: 'train', lines: [2, 4] },
      { split: 'train', lines: [3] },
      { split: 'val', lines: [5] },
      { split: 'test', lines: [6] },
    ]);
    // An item is a few hundred bytes whatever its rows.
    for (const item of plan) expect(Buffer.byteLength(JSON.stringify(item))).toBeLessThan(400);

    const shards = store.child(shardsPrefix('rt-run'));
    const seen = new Set<number>();
    const results = [];
    for (const item of plan) {
      const res = await shard(item);
      const summary = await json<ShardSummary>(`${shardsPrefix('rt-run')}/${shardSummaryName(item.shard)}`);
      // The handler reuses its shard buffer across invocations (of other sizes in between): same bytes again.
      const again = await shard(item);
      expect(again).toEqual(res);
      expect(await json<ShardSummary>(`${shardsPrefix('rt-run')}/${shardSummaryName(item.shard)}`)).toEqual(summary);
      results.push(res);
      const s = decodeShard(await shards.get(summary.name!), summary.name);
      expect(s.imageSize).toBe(32);
      expect(res).toMatchObject({ rows: item.rows, images: s.imageIds.length, badRows: 0 });
      for (const [i, id] of s.imageIds.entries()) {
        const want = await preprocessImage(files[id]!, { size: 32 });
        expect(Buffer.from(s.pixels.subarray(i * 32 * 32 * 3, (i + 1) * 32 * 32 * 3)).equals(Buffer.from(want))).toBe(true);
      }
      for (const [k, row] of (await rowsOf(item)).entries()) {
        seen.add(row.line);
        expect(s.lines[k]).toBe(row.line);
        expect(s.captions[k]).toBe(row.caption);
        expect(s.imageIds[s.captionImage[k]!]).toBe(row.filename);
        expect(s.splits[s.captionImage[k]!]).toBe(row.split);
        expect(s.labels[s.captionImage[k]!]).toBe(row.label ?? null);
        expect(Array.from(s.tokens.subarray(k * 77, (k + 1) * 77))).toEqual(Array.from(tokenize(row.caption)));
      }
    }
    expect([...seen].sort()).toEqual([2, 3, 4, 5, 6]);
    // Overlapping invocations in one process (the local workflow runner's Map) never share a buffer.
    expect(await Promise.all(plan.map((item) => shard(item)))).toEqual(results);
    expect((await store.list('')).filter((o) => o.key.includes('_tmp'))).toEqual([]);
    expect(await checksums(store, 'datasets/')).toEqual(before);

    // Collect: the index the worker plans from, every shard once with its split.
    expect(await collect({ bucket: BUCKET, runId: 'rt-run', dataset: 'rt', shards: out.shards })).toEqual({ rows: 5, images: 4, shards: 4, badRows: 0 });
    const index = await json<ShardIndexFile>(`${shardsPrefix('rt-run')}/${SHARD_INDEX_FILE}`);
    expect(index.imageSize).toBe(32);
    expect(index.shards.map((s) => [s.split, s.rows]).sort()).toEqual([['test', 1], ['train', 1], ['train', 2], ['val', 1]]);
    expect(index.labels).toEqual({ train: ['bridge', 'farm'], val: [], test: ['town'] });
    expect(await json<ValidationReport>(validationKey('rt-run'))).toMatchObject({ valid: true, checked: 'images', counts: { goodRows: 5, badRows: 0 } });
  });

  it('rejects hostile input before touching the dataset', async () => {
    const item = { bucket: BUCKET, runId: 'x', dataset: 'rt', shard: 0, split: 'train', imageSize: 32, rows: 1, part: { key: 'datasets/rt/captions.csv', start: 0, end: 10 } };
    await expect(shard(item as ShardRequest)).rejects.toThrow(/is not a range of this run's plan \(runs\/x\/plan\/\)/);
    await expect(shard({ ...item, part: { key: 'runs/x/plan/../../datasets/rt/captions.csv', start: 0, end: 10 } } as ShardRequest)).rejects.toThrow(/not a range of this run's plan/);
  });
});

describe('an image that only the Shard step can find unreadable', () => {
  const dataset = async (name: string, policy: string): Promise<void> => {
    const big = await jpeg(1200, 1200, 9);
    // Over 256 KiB: no header probe of the whole file could have caught the corruption at its end.
    const corrupt = big.subarray(0, Math.floor(big.length * 0.6));
    expect(corrupt.length).toBeGreaterThan(256 * 1024);
    const rows = ['filename,caption,split'];
    const images: Record<string, Uint8Array> = { 'sub/corrupt.jpg': corrupt };
    for (let i = 0; i < 39; i++) {
      rows.push(`ok${i}.png,photo number ${i},${i % 10 === 9 ? 'val' : 'train'}`);
      images[`ok${i}.png`] = await png(8, 8, 3, i);
    }
    rows.push('sub/corrupt.jpg,a truncated scan,train');
    await putAll(store, `datasets/${name}`, { ...images, 'captions.csv': rows.join('\n'), 'train.json': `{"model": "ViT-tiny", "validation": {"policy": "${policy}"}}` });
  };

  it("is dropped under 'skip': the run goes on with the rest, and the report names the file and line", async () => {
    await dataset('late-skip', 'skip');
    const { error, report, summaries } = await runPipeline('late-skip', 'late-skip-run');
    expect(error).toBeUndefined();
    expect(report).toMatchObject({ valid: true, checked: 'images', counts: { rows: 40, goodRows: 39, badRows: 1, goodImages: 39 } });
    expect(report.problems).toEqual([{ file: 'captions.csv', line: 41, field: 'filename', reason: expect.stringMatching(/cannot decode image|not a readable image/) }]);
    expect(summaries.reduce((n, s) => n + s.badImages, 0)).toBe(1);
    const index = await json<ShardIndexFile>(`${shardsPrefix('late-skip-run')}/${SHARD_INDEX_FILE}`);
    expect(index.shards.reduce((n, s) => n + s.rows, 0)).toBe(39);
  });

  it("fails the run under 'fail' at Collect, with the file and line in the cause", async () => {
    await dataset('late-fail', 'fail');
    const { error, report } = await runPipeline('late-fail', 'late-fail-run');
    expect(error?.name).toBe('DatasetInvalid');
    expect(error!.message).toMatch(/^1 of 40 rows are bad: captions\.csv line 41 filename: (cannot decode image|not a readable image)/);
    expect(report).toMatchObject({ valid: false, checked: 'images' });
    expect(await store.head(`${shardsPrefix('late-fail-run')}/${SHARD_INDEX_FILE}`)).toBeUndefined();
  });
});
