import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelConfig } from '../../core/model-config/config.ts';
import { CheckpointMismatchError, TrainInputError } from '../../core/run-errors.ts';
import { FsStore } from '../../core/store.ts';
import type { HostTensor, StateDict } from '../../core/tensors/tensor.ts';
import { initParams } from '../../worker/models/init.ts';
import type { TrainEvent } from '../../worker/train/log.ts';
import { chooseModel, loadBaseModel } from '../../worker/train/base-model.ts';
import { sceneShards, tempDir, writeShards } from '../worker/helpers.ts';
import { bytesOf, type SaveValue, type TensorSpec, torchSave } from '../../worker/checkpoint/torch-writer.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const config = loadModelConfig('ViT-tiny');

/** A torch.save()d state dict (one float32 storage per tensor), as open_clip writes a plain checkpoint. */
function torchStateDict(dict: StateDict): Uint8Array {
  const value = new Map<string, SaveValue>();
  const storages: Record<string, Uint8Array> = {};
  [...dict].forEach(([k, t], i) => {
    const spec: TensorSpec = { storage: { key: String(i), type: 'FloatStorage', numel: t.data.length }, size: [...t.shape] };
    value.set(k, spec);
    storages[String(i)] = bytesOf(t.data);
  });
  return torchSave(value, storages);
}

const base = (): StateDict => initParams(config, 0);
const copy = (t: HostTensor): HostTensor => ({ shape: [...t.shape], data: t.data.slice() });

/** ViT-tiny has blocks 0 and 1: a third one, named as open_clip names it. */
function withExtraBlock(dict: StateDict): StateDict {
  const out = new Map(dict);
  for (const [k, t] of dict) if (k.startsWith('visual.transformer.resblocks.1.')) out.set(k.replace('.resblocks.1.', '.resblocks.2.'), copy(t));
  return out;
}

describe('strict state-dict keys (open_clip strict load_state_dict)', () => {
  const dir = tempDir('strict-keys');
  afterAll(dir.cleanup);
  const write = (name: string, dict: StateDict): string => {
    const path = join(dir.path, name);
    writeFileSync(path, torchStateDict(dict));
    return path;
  };
  const refusal = async (path: string, choice = chooseModel(path)): Promise<CheckpointMismatchError> => {
    const e = await loadBaseModel(path, choice, 0).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(CheckpointMismatchError);
    expect(e).toBeInstanceOf(TrainInputError);
    return e as CheckpointMismatchError;
  };

  it('loads a checkpoint of exactly the config, and what open_clip itself strips or reshapes', async () => {
    const exact = write('ViT-tiny-exact.pt', base());
    expect([...(await loadBaseModel(exact, chooseModel(exact), 0)).keys()]).toEqual([...base().keys()]);
    // DataParallel's module. prefix, a [1] logit_scale (open_clip reshapes it), an HF position_ids buffer (deleted).
    const tweaked = new Map([...base()].map(([k, t]) => [`module.${k}`, k === 'logit_scale' ? { shape: [1], data: t.data } : t]));
    tweaked.set('module.text.transformer.embeddings.position_ids', { shape: [1, 77], data: new Float32Array(77) });
    const path = write('ViT-tiny-ddp.pt', tweaked);
    const loaded = await loadBaseModel(path, chooseModel(path), 0);
    expect([...loaded.keys()].sort()).toEqual([...base().keys()].sort());
    expect(loaded.get('logit_scale')!.shape).toEqual([]);
  });

  it('refuses a 13th block (here a third), naming the file, the keys and how the config was chosen', async () => {
    const path = write('RemoteCLIP-ViT-tiny-deeper.pt', withExtraBlock(base()));
    const e = await refusal(path);
    expect(e.name).toBe('CheckpointMismatchError');
    expect(e.message).toContain(path);
    expect(e.message).toContain('config ViT-tiny (from the file name "RemoteCLIP-ViT-tiny-deeper.pt")');
    expect(e.message).toMatch(/12 unexpected keys the config does not declare \(visual\.transformer\.resblocks\.2\.ln_1\.weight, .*, and 7 more\)/);
    expect(e.message).toContain('"ignoreUnexpectedKeys": true');
    expect(e.message).not.toContain('\n');
    expect(e.unexpected).toHaveLength(12);
    expect(e.missing).toEqual([]);
  });

  it('refuses an extra head, with the config named by train.json', async () => {
    const dict = base();
    dict.set('visual.head.weight', { shape: [10, 32], data: new Float32Array(320) });
    dict.set('visual.head.bias', { shape: [10], data: new Float32Array(10) });
    const path = write('model-with-head.pt', dict);
    const e = await refusal(path, chooseModel(path, 'ViT-tiny', 'train.json "model"'));
    expect(e.message).toContain('config ViT-tiny (named by train.json "model")');
    expect(e.message).toContain('2 unexpected keys the config does not declare (visual.head.weight, visual.head.bias)');
  });

  it('refuses a missing key and a tensor of another shape, with both shapes', async () => {
    const missing = base();
    missing.delete('visual.ln_post.weight');
    const e1 = await refusal(write('ViT-tiny-missing.pt', missing));
    expect(e1.message).toContain('1 missing key (visual.ln_post.weight)');
    expect(e1.missing).toEqual(['visual.ln_post.weight']);

    const shaped = base();
    const proj = shaped.get('visual.proj')!;
    shaped.set('visual.proj', { shape: [proj.shape[1]!, proj.shape[0]!], data: proj.data });
    const e2 = await refusal(write('ViT-tiny-shape.pt', shaped));
    expect(e2.message).toContain(`visual.proj is [${proj.shape[1]},${proj.shape[0]}] in the file, [${proj.shape[0]},${proj.shape[1]}] in the config`);
    expect(e2.wrongShape).toEqual([{ key: 'visual.proj', checkpoint: [proj.shape[1], proj.shape[0]], config: proj.shape }]);
  });

  it('ignoreUnexpectedKeys loads without the extra keys and reports them', async () => {
    const path = write('ViT-tiny-ignored.pt', withExtraBlock(base()));
    const events: TrainEvent[] = [];
    const loaded = await loadBaseModel(path, chooseModel(path), 0, { ignoreUnexpectedKeys: true, log: (e) => events.push(e) });
    expect([...loaded.keys()]).toEqual([...base().keys()]);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ event: 'checkpoint-keys-ignored', checkpoint: path, config: 'ViT-tiny', count: 12 });
    expect(events[0]!.keys).toContain('visual.transformer.resblocks.2.attn.in_proj_weight');
    // Missing keys are refused with or without it.
    const missing = base();
    missing.delete('logit_scale');
    const e = await loadBaseModel(write('ViT-tiny-missing2.pt', missing), config, 0, { ignoreUnexpectedKeys: true }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(CheckpointMismatchError);
  });

  it('rsclip train on such a checkpoint exits 1 with one line and no stack trace', async () => {
    const shards = join(dir.path, 'shards');
    await writeShards(new FsStore(shards), sceneShards({ perClass: 2, valPerClass: 1, size: 32, shards: 1, seed: 1 }));
    const model = write('ViT-tiny-extra.pt', withExtraBlock(base()));
    const out = join(dir.path, 'out');
    mkdirSync(out);
    const args = ['--import', 'tsx', 'cli/main.ts', 'train', '--shards', shards, '--model', model, '--out', out, '--max-steps', '1'];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(1);
    expect(stdout).toBe('');
    // The worker's JSON progress events come first; the refusal is the one line that is not JSON.
    const lines = stderr.trim().split('\n').filter((l) => !l.startsWith('{'));
    expect(lines, stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^rsclip: .*ViT-tiny-extra\.pt: does not match config ViT-tiny \(from the file name "ViT-tiny-extra\.pt"\).*12 unexpected keys/);
    expect(stderr).not.toMatch(/\n\s+at /);
  }, 60_000);
});
