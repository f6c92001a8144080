import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../core/store.ts';
import { sceneShards, tempDir, writeShards } from './helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `rsclip train` as its own process (one node process: SIGKILL reaches the trainer itself, not a wrapper). */
function train(shards: string, out: string, killWhen?: () => boolean): Promise<Run> {
  const args = ['--import', 'tsx', 'cli/main.ts', 'train', '--shards', shards, '--model', 'random:ViT-tiny', '--out', out];
  // 8 steps over one and a bit epochs (eval and a checkpoint at the epoch end), a checkpoint every 2 steps.
  args.push('--max-steps', '8', '--batch-size', '8', '--lr', '1e-3', '--seed', '5', '--checkpoint-every', '2');
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const poll = killWhen && setInterval(() => killWhen() && child.kill('SIGKILL'), 20);
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      if (poll) clearInterval(poll);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

const lastJson = (r: Run): { steps: number; sha256: string; final_model: string } => JSON.parse(r.stdout.trim().split('\n').at(-1)!);

describe('kill and resume', () => {
  const dir = tempDir('resume');
  afterAll(dir.cleanup);

  it('a worker killed after its first checkpoint resumes to bit-identical final weights', async () => {
    const shards = join(dir.path, 'shards');
    await writeShards(new FsStore(shards), sceneShards({ perClass: 3, valPerClass: 1, size: 32, shards: 3, seed: 5 }));
    const straight = join(dir.path, 'straight');
    const killed = join(dir.path, 'killed');
    const [reference, victim] = await Promise.all([
      train(shards, straight),
      train(shards, killed, () => existsSync(join(killed, 'checkpoints', 'latest.json'))),
    ]);
    expect(reference.code, reference.stderr).toBe(0);
    expect(victim.signal).toBe('SIGKILL');
    expect(existsSync(join(killed, 'final', 'metrics.json'))).toBe(false);

    const resumed = await train(shards, killed);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/"event":"resume","step":[1-9]/);
    const a = lastJson(reference);
    const b = lastJson(resumed);
    expect(b.steps).toBe(a.steps);
    expect(b.final_model).toBe(join(killed, 'final', 'model.safetensors'));
    expect(b.sha256).toBe(a.sha256);
  }, 300_000);
});
