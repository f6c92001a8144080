import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO, runDemo } from '../../cli/commands/demo.ts';
import { sha256Hex } from '../../core/store.ts';

const dirs: string[] = [];
const tmp = async (): Promise<string> => {
  const d = await mkdtemp(join(tmpdir(), 'rsclip-e2e-'));
  dirs.push(d);
  return d;
};
afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

const quiet = (): void => undefined;

describe('rsclip run/demo through the real workflow', () => {
  it('trains a tiny model on a demo-sized dataset, improves retrieval and writes the report', async () => {
    const out = join(await tmp(), 'result');
    // Smaller than the demo (96 tiles, 32 in validation) to stay well inside the test budget.
    const r = await runDemo({ data: { ...DEMO.data, perClass: 12, valPerClass: 4, size: 32 }, train: { ...DEMO.train, epochs: 5 } }, out, quiet);

    expect(r.after.mean_recall).toBeGreaterThan(r.before.mean_recall + 10);
    expect(r.after.images).toBe(32);

    const model = await readFile(join(out, 'model.safetensors'));
    const latest = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as { runId: string; model: string; sha256: string };
    expect(latest.runId).toBe(r.runId);
    expect(latest.model).toBe(`runs/${r.runId}/final/model.safetensors`);
    expect(latest.sha256).toBe(sha256Hex(model));
    const validation = JSON.parse(await readFile(join(out, 'validation.json'), 'utf8')) as { valid: boolean; counts: { images: number; badRows: number } };
    expect(validation).toMatchObject({ valid: true, counts: { images: 96, badRows: 0 } });
    for (const f of ['image_encoder.onnx', 'text_encoder.onnx', 'metrics.json', 'loss.svg']) expect((await readFile(join(out, f))).length).toBeGreaterThan(0);

    const html = await readFile(r.report, 'utf8');
    const table = /<table id="metrics">([\s\S]*?)<\/table>/.exec(html)![1]!;
    expect(table).toContain(`Mean recall (mR)</th><td>${r.before.mean_recall.toFixed(1)}</td><td>${r.after.mean_recall.toFixed(1)}</td>`);
    const gallery = /<table id="gallery">([\s\S]*?)<\/table>/.exec(html)![1]!;
    expect(gallery.match(/<tbody>[\s\S]*<\/tbody>/)![0].match(/<tr>/g)).toHaveLength(8);
    expect(gallery.match(/<li class="(hit|miss)"><img src="data:image\/png;base64,/g)).toHaveLength(8 * 10);
    // Fine-tuning must show in the gallery too: more correct top-5 answers after than before.
    const correct = (col: number): number =>
      [...gallery.matchAll(/<tr><th scope="row">[\s\S]*?<\/th><td>([\s\S]*?)<\/td><td>([\s\S]*?)<\/td><\/tr>/g)].reduce(
        (a, m) => a + (m[col]!.match(/class="hit"/g)?.length ?? 0),
        0,
      );
    expect(correct(2)).toBeGreaterThan(correct(1));
  });
});
