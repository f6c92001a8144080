import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDemoDataset } from '../../cli/demo-data/generate.ts';
import { startLocalS3, uploadFolder, type InProcessS3 } from '../../cli/local-s3.ts';
import { runWorkflowLocally } from '../../cdk/local/run-workflow.ts';
import type { ValidationReport } from '../../core/dataset/types.ts';
import type { RunSpec } from '../../core/run-spec.ts';
import { captionsKey, datasetPrefix, modelLatestKey, validationKey } from '../../core/s3-layout.ts';
import { silentLogger } from '../../worker/train/log.ts';
import { runTraining } from '../../worker/train/run.ts';

let s3: InProcessS3;
let data: string;
let corruptLine: number;

beforeAll(async () => {
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  s3 = await startLocalS3('bad-image-test');
  data = await mkdtemp(join(tmpdir(), 'rsclip-bad-image-'));
  await generateDemoDataset(data, { perClass: 2, valPerClass: 1, testPerClass: 0, size: 32, seed: 5 });
  // A large JPEG cut short: its header is fine, its body ends early. Only decoding all of it finds that.
  const noise = Uint8Array.from({ length: 1400 * 1400 * 3 }, (_, i) => (i * 2654435761) >>> 24);
  const jpeg = await sharp(noise, { raw: { width: 1400, height: 1400, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
  const cut = jpeg.subarray(0, Math.floor(jpeg.length * 0.7));
  expect(cut.length).toBeGreaterThan(1024 * 1024);
  await writeFile(join(data, 'scan-truncated.jpg'), cut);
  const csv = (await readFile(join(data, 'captions.csv'), 'utf8')).trimEnd().split('\n');
  corruptLine = csv.length + 1;
  const header = csv[0]!.split(',');
  const row = header.map((c) => (c === 'filename' ? 'scan-truncated.jpg' : c === 'caption' ? 'a truncated scan of a harbour' : c === 'split' ? 'train' : ''));
  await writeFile(join(data, 'captions.csv'), `${[...csv, row.join(',')].join('\n')}\n`);
  const options = { model: 'ViT-tiny', init: 'random:ViT-tiny', maxSteps: 2, batchSize: 8, seed: 1, validation: { policy: 'skip' } };
  await writeFile(join(data, 'train.json'), JSON.stringify(options));
});
afterAll(async () => {
  await s3?.stop();
  if (data) await rm(data, { recursive: true, force: true });
});

describe("a corrupt large image under policy 'skip'", () => {
  it('leaves a published model, and a report naming the file and line', async () => {
    await uploadFolder(s3, datasetPrefix('harbour'), data);
    const result = await runWorkflowLocally({
      bucket: s3.bucket,
      key: captionsKey('harbour'),
      train: (spec: RunSpec, access) => runTraining(spec, { bucket: access.store, log: silentLogger }),
    });
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('SUCCEEDED');
    expect(await s3.store.head(modelLatestKey('harbour'))).toBeDefined();
    const report = JSON.parse(new TextDecoder().decode(await s3.store.get(validationKey(result.runId)))) as ValidationReport;
    expect(report).toMatchObject({ valid: true, checked: 'images', policy: 'skip', counts: { badRows: 1 } });
    expect(report.problems).toEqual([
      { file: 'captions.csv', line: corruptLine, field: 'filename', reason: expect.stringMatching(/cannot decode image|not a readable image/) },
    ]);
    expect(report.summary).toMatch(/\(1 bad rows skipped under policy 'skip'\)/);
  }, 120_000);
});
