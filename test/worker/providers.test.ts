import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../core/store.ts';
import { chooseProvider } from '../../worker/engine/session.ts';
import { parseProviders } from '../../worker/train/run.ts';
import { sceneShards, tempDir, writeShards } from './helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..');

// The project installs onnxruntime-node without its CUDA libraries (ONNXRUNTIME_NODE_INSTALL=skip), so the CUDA
// provider never loads here: a deterministic unavailable provider.
describe('execution providers in order of preference', () => {
  it('parses RSCLIP_EP and --ep lists', () => {
    expect(parseProviders('cuda,webgpu', 'RSCLIP_EP')).toEqual(['cuda', 'webgpu']);
    expect(parseProviders(' webgpu , cpu', '--ep')).toEqual(['webgpu', 'cpu']);
    expect(parseProviders('', 'RSCLIP_EP')).toBeUndefined();
    expect(() => parseProviders('cuda,tpu', 'RSCLIP_EP')).toThrow(/RSCLIP_EP must list providers among cpu, cuda, webgpu, got 'tpu'/);
    expect(() => parseProviders('cpu,cpu', '--ep')).toThrow(/--ep names a provider twice/);
  });

  it('takes the first provider that loads and says why the others did not', async () => {
    const choice = await chooseProvider(['cuda', 'cpu']);
    expect(choice.ep).toBe('cpu');
    expect(choice.skipped).toHaveLength(1);
    expect(choice.skipped[0]).toMatchObject({ ep: 'cuda', reason: expect.stringMatching(/execution provider 'cuda' could not be loaded/) });
    await expect(chooseProvider(['cuda'])).rejects.toThrow(/^no execution provider could be used: cuda: execution provider 'cuda' could not be loaded/);
  });

  describe('rsclip train', () => {
    const dir = tempDir('providers');
    afterAll(dir.cleanup);
    const shards = join(dir.path, 'shards');
    const train = async (ep: string, out: string) => {
      await writeShards(new FsStore(shards), sceneShards({ perClass: 2, valPerClass: 1, size: 32, shards: 1, seed: 3 }));
      const args = ['--import', 'tsx', 'cli/main.ts', 'train', '--shards', shards, '--model', 'random:ViT-tiny', '--out', join(dir.path, out)];
      return spawnSync(process.execPath, [...args, '--max-steps', '2', '--batch-size', '4', '--ep', ep], { cwd: ROOT, encoding: 'utf8' });
    };

    it('falls back along the list, logging each provider it skips', async () => {
      const r = await train('cuda,cpu', 'fallback');
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/"event":"provider-unavailable","ep":"cuda","reason":"execution provider 'cuda' could not be loaded/);
      expect(r.stderr).toMatch(/"event":"plan",.*"ep":"cpu"/);
    });

    it('stops with one line when no listed provider loads', async () => {
      const r = await train('cuda', 'none');
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^rsclip: no execution provider could be used: cuda: /m);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  });
});
