import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../cli/command.ts';
import { runLocal } from '../../cli/commands/run.ts';
import { png } from '../ingest/helpers/images.ts';

// A file of its own: the Lambda handlers keep their S3 client per process (as on AWS), so one local pipeline
// per test process.
let root = '';
afterAll(async () => root && rm(root, { recursive: true, force: true }));
const quiet = (): void => undefined;

describe('rsclip run on bad input', () => {
  it('rejects a folder without captions.csv and a train.json that breaks the schema, before starting anything', async () => {
    root = await mkdtemp(join(tmpdir(), 'rsclip-run-errors-'));
    await expect(runLocal({ data: root, model: 'random:ViT-tiny', log: quiet })).rejects.toThrow(/has no captions\.csv/);
    const data = join(root, 'ds');
    await mkdir(data);
    await writeFile(join(data, 'captions.csv'), 'filename,caption\na.png,a beach\n');
    await writeFile(join(root, 'bad.json'), '{"epochs": -1}');
    await expect(runLocal({ data, options: join(root, 'bad.json'), model: 'random:ViT-tiny', log: quiet })).rejects.toThrow(/bad\.json: epochs: /);
    await expect(runLocal({ data, log: quiet })).rejects.toThrow(/no base model/);
    await expect(runLocal({ data, model: 'random:No-Such-Config', log: quiet })).rejects.toThrow(/^model config: .*No-Such-Config/);
  });

  it('ends an invalid dataset as one line naming the bad row, with validation.json in --out/failed', async () => {
    const data = join(root, 'broken');
    await mkdir(data);
    await writeFile(join(data, 'captions.csv'), 'filename,caption\nmissing.png,a beach\n');
    const out = join(root, 'out');
    const err = await runLocal({ data, model: 'random:ViT-tiny', out, log: quiet }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/DatasetInvalid: .*line 2/);
    expect((err as Error).message).not.toContain('\n');
    expect((err as Error).message).toContain(join(out, 'failed', 'validation.json'));
    const report = JSON.parse(await readFile(join(out, 'failed', 'validation.json'), 'utf8')) as { valid: boolean };
    expect(report.valid).toBe(false);
  });

  it('refuses a base model or a train.json "model" that is no checkpoint or config name in one line that does not quote the file', async () => {
    const data = join(root, 'tiles');
    await mkdir(data);
    for (const i of [0, 1, 2, 3]) await writeFile(join(data, `t${i}.png`), await png(8, 8, 3, i));
    await writeFile(join(data, 'captions.csv'), 'filename,caption,split\nt0.png,a farm,train\nt1.png,a lake,train\nt2.png,a road,val\nt3.png,a town,val\n');
    await writeFile(join(data, 'train.json'), '{"model": "ViT-tiny", "epochs": 1, "batchSize": 2}');
    const notes = join(root, 'notes.pt');
    await writeFile(notes, 'token=hunter2\nsecond line\n');
    const err = await runLocal({ data, model: notes, out: join(root, 'tiles-out'), log: quiet }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/notes\.pt: neither a torch zip checkpoint nor a safetensors file/);
    expect((err as Error).message).not.toMatch(/hunter2|token|\n/);
    // train.json's "model" is a config name, for run as for validate: a path is refused before anything is read.
    await writeFile(join(data, 'train.json'), JSON.stringify({ model: notes, epochs: 1 }));
    const named = await runLocal({ data, model: 'random:ViT-tiny', out: join(root, 'tiles-out'), log: quiet }).catch((e: unknown) => e);
    expect(named).toBeInstanceOf(UserError);
    expect((named as Error).message).toMatch(/^train\.json model: unknown model '.*notes\.pt' \(known: .*ViT-tiny/);
    expect((named as Error).message).not.toMatch(/hunter2|token|\n/);
  }, 120_000);
});
