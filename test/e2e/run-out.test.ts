import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../cli/command.ts';
import { runLocal } from '../../cli/commands/run.ts';
import { generateDemoDataset } from '../../cli/demo-data/generate.ts';
import { sha256Hex } from '../../core/store.ts';

// A file of its own: the runs here share the process with no other pipeline test.
const ROOT = join(import.meta.dirname, '..', '..');
let root = '';
afterAll(async () => root && rm(root, { recursive: true, force: true }));

/** 3 epochs of 3 steps, a checkpoint every 2 steps and at each epoch end. */
const TRAIN = { model: 'ViT-tiny', epochs: 3, batchSize: 8, lr: 3e-3, warmupSteps: 2, seed: 0, checkpointEvery: 2 };

/** `rsclip run` as its own process (one node process: SIGKILL reaches the worker itself, not a wrapper). */
function runProcess(data: string, out: string, killWhen: () => boolean): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  const args = ['--import', 'tsx', 'cli/main.ts', 'run', '--data', data, '--model', 'random:ViT-tiny', '--out', out];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const poll = setInterval(() => killWhen() && child.kill('SIGKILL'), 20);
  return new Promise((resolve) =>
    child.on('close', (_code, signal) => {
      clearInterval(poll);
      resolve({ signal, stderr });
    }),
  );
}

/** The files in `dir` (relative paths), leaving out run working folders. */
async function listing(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const ent of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const rel = join(ent.parentPath, ent.name).slice(dir.length + 1);
    if (ent.isFile() && !rel.startsWith('.incoming-')) out[rel] = sha256Hex(await readFile(join(dir, rel)));
  }
  return out;
}

const incoming = (out: string): string[] => (existsSync(out) ? readdirSync(out).filter((n) => n.startsWith('.incoming-')) : []);

describe('rsclip run --out', () => {
  it('resumes a killed run from its last checkpoint, to the model an uninterrupted run makes, and swaps the results in only when done', async () => {
    root = await mkdtemp(join(tmpdir(), 'rsclip-run-out-'));
    const data = join(root, 'tiles');
    await generateDemoDataset(data, { perClass: 3, valPerClass: 1, testPerClass: 0, size: 32, seed: 5 });
    await writeFile(join(data, 'train.json'), JSON.stringify(TRAIN));

    // A previous run's results (and a file of the user's) that a killed run must leave as they are.
    const out = join(root, 'out');
    const previous = { 'model.safetensors': 'old model', 'validation.json': '{"old": true}', 'report.html': 'old report', 'old.svg': '<svg/>' };
    await mkdir(out);
    for (const [f, body] of Object.entries(previous)) await writeFile(join(out, f), body);
    await writeFile(join(out, 'notes.txt'), 'mine');
    await writeFile(join(out, '.rsclip-run.json'), JSON.stringify({ files: Object.keys(previous) }));
    const before = await listing(out);

    const reference = join(root, 'reference');
    const checkpointed = () => incoming(out).some((d) => existsSync(join(out, d, 'checkpoints', 'latest.json')));
    const [straight, victim] = await Promise.all([
      runLocal({ data, model: 'random:ViT-tiny', out: reference, log: () => undefined }),
      runProcess(data, out, checkpointed),
    ]);
    expect(victim.signal, victim.stderr).toBe('SIGKILL');
    expect(await listing(out)).toEqual(before);
    expect(incoming(out)).toEqual([`.incoming-${straight.runId}`]);

    const lines: string[] = [];
    const resumed = await runLocal({ data, model: 'random:ViT-tiny', out, log: (l) => lines.push(l) });
    expect(resumed.runId).toBe(straight.runId);
    const resume = lines.map((l) => /^train: resumed from step (\d+)/.exec(l)).find(Boolean);
    expect(resume, lines.join('\n')).toBeTruthy();
    expect(Number(resume![1])).toBeGreaterThan(0);
    expect(Number(resume![1])).toBeLessThan(resumed.steps);
    expect(resumed.steps).toBe(straight.steps);
    const model = await readFile(join(out, 'model.safetensors'));
    expect(sha256Hex(model)).toBe(sha256Hex(await readFile(join(reference, 'model.safetensors'))));

    // The documented layout, the previous run's leftovers gone, the user's file kept, no working folder left.
    const files = await listing(out);
    for (const f of ['image_encoder.onnx', 'text_encoder.onnx', 'metrics.json', 'loss.svg', 'validation.json', 'latest.json', 'report.html', 'notes.txt']) {
      expect(files[f], f).toBeDefined();
    }
    expect(files['old.svg']).toBeUndefined();
    expect(JSON.parse(await readFile(join(out, 'latest.json'), 'utf8'))).toMatchObject({ runId: resumed.runId, sha256: sha256Hex(model) });
    expect(incoming(out)).toEqual([]);
    expect(Object.keys(files).filter((f) => f.startsWith('failed'))).toEqual([]);

    // A failed run leaves the results above as they are and names where its validation.json went.
    const broken = join(root, 'broken');
    await cp(data, broken, { recursive: true });
    await writeFile(join(broken, 'captions.csv'), `${await readFile(join(data, 'captions.csv'), 'utf8')}images/missing.png,a beach,train,beach\n`);
    const good = await listing(out);
    const err = await runLocal({ data: broken, model: 'random:ViT-tiny', out, log: () => undefined }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    expect(message).toContain(`details: ${join(out, 'failed', 'validation.json')}`);
    expect(message).toContain(`nothing else in ${out} changed`);
    const after = await listing(out);
    const { 'failed/validation.json': failed, ...rest } = after;
    expect(rest).toEqual(good);
    expect(JSON.parse(await readFile(join(out, 'failed', 'validation.json'), 'utf8'))).toMatchObject({ valid: false });
    expect(failed).toBeDefined();
    expect(incoming(out)).toEqual([]);
  }, 600_000);
});
