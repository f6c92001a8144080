import { mkdirSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LATEST_CHECKPOINT } from '../../core/s3-layout.ts';
import { FsStore, type ObjectStore } from '../../core/store.ts';
import { BEST_CHECKPOINT } from '../../core/s3-layout.ts';
import { loadLatestCheckpoint, saveCheckpoint, type TrainerState } from '../../worker/train/checkpoints.ts';
import { lineChart } from '../../worker/train/plots.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { tempDir } from './helpers.ts';

const tensors = (v: number): StateDict =>
  new Map([
    ['visual.proj', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, v]) }],
    ['logit_scale', { shape: [], data: Float32Array.from([v]) }],
  ]);

const state = (step: number, best?: number): TrainerState => ({
  step,
  cursor: { epoch: 1, sample: 3 },
  augmentRng: [1, 2, 3, 4],
  fingerprint: { seed: 0 },
  history: [{ step, epoch: 0, loss: 1.5, lr: 1e-4, logit_scale: 14.3, grad_norm: 0.7 }],
  evals: [],
  ...(best !== undefined ? { best: { step: best, dir: `checkpoints/step-${best}`, mean_recall: 12.5 } } : {}),
});

/** Records the order of published keys. */
function recording(store: ObjectStore, log: string[]): ObjectStore {
  return new Proxy(store, {
    get(target, prop, recv) {
      if (prop === 'put') return async (key: string, body: Uint8Array | string) => {
        await target.put(key, body);
        log.push(key);
      };
      return Reflect.get(target, prop, recv);
    },
  });
}

describe('checkpoints', () => {
  const dir = tempDir('ckpt');
  afterAll(dir.cleanup);

  it('round-trips params, optimizer and trainer state; latest.json is published last', async () => {
    const store = new FsStore(dir.path);
    expect(await loadLatestCheckpoint(store)).toBeUndefined();
    const order: string[] = [];
    await saveCheckpoint(recording(store, order), { params: tensors(6), optimizer: { step: 4, m: tensors(0.5), v: tensors(0.25) }, state: state(4, 4) });
    expect(order.at(-1)).toBe(LATEST_CHECKPOINT);
    expect(order).toContain(BEST_CHECKPOINT);
    expect(order.indexOf(BEST_CHECKPOINT)).toBeGreaterThan(order.indexOf('checkpoints/step-4/trainer.json'));
    const back = (await loadLatestCheckpoint(store))!;
    expect(back.state).toEqual(state(4, 4));
    expect(back.optimizer.step).toBe(4);
    expect([...back.params.get('visual.proj')!.data]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(back.params.get('logit_scale')!.shape).toEqual([]);
    expect([...back.optimizer.v.get('visual.proj')!.data]).toEqual([1, 2, 3, 4, 5, 0.25]);
  });

  it('keeps only the latest and the best checkpoint directories', async () => {
    const store = new FsStore(dir.path);
    await saveCheckpoint(store, { params: tensors(8), optimizer: { step: 8, m: tensors(0), v: tensors(0) }, state: state(8, 4) });
    await saveCheckpoint(store, { params: tensors(12), optimizer: { step: 12, m: tensors(0), v: tensors(0) }, state: state(12, 4) });
    const dirs = new Set((await store.list('checkpoints/step-')).map((o) => o.key.split('/')[1]));
    expect(dirs).toEqual(new Set(['step-4', 'step-12']));
    // On disk the pruned step-8/ is gone as a folder too, and the folders still in use stay.
    expect((await readdir(join(dir.path, 'checkpoints'))).sort()).toEqual(['best.json', 'latest.json', 'step-12', 'step-4'].sort());
    expect((await loadLatestCheckpoint(store))!.state.step).toBe(12);
  });

  it('refuses a trainer.json that disagrees with its pointer', async () => {
    const store = new FsStore(dir.path);
    await store.put(LATEST_CHECKPOINT, JSON.stringify({ step: 99, dir: 'checkpoints/step-12' }));
    await expect(loadLatestCheckpoint(store)).rejects.toThrow(/step 12 but the pointer says 99/);
  });
});

describe('plots', () => {
  it('draws each series as a path with one vertex per finite point', () => {
    const svg = lineChart({
      title: 'loss <&>',
      xLabel: 'step',
      yLabel: 'loss',
      series: [
        { name: 'a', points: [[1, 3], [2, 2], [3, NaN], [4, 1]] },
        { name: 'b', points: [[1, 1], [4, 1]] },
      ],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('loss &lt;&amp;&gt;');
    const paths = [...svg.matchAll(/<path d="([^"]+)"/g)].map((m) => m[1]!);
    expect(paths).toHaveLength(2);
    expect(paths[0]!.match(/[ML]/g)).toHaveLength(3);
    expect(svg).not.toMatch(/NaN|Infinity/);
  });
});

describe('FsStore writes', () => {
  const dir = tempDir('fs-store');
  afterAll(dir.cleanup);

  it('stage beside the target under a hidden name that a listing never shows, and leave nothing after the rename', async () => {
    const store = new FsStore(dir.path);
    await store.put('final/model.safetensors', 'weights');
    // What a process killed between write and rename leaves.
    mkdirSync(join(dir.path, 'final'), { recursive: true });
    writeFileSync(join(dir.path, 'final', '.metrics.json.0b5e4c3a-8f43-4a8e-9a51-9d7a7c1b2e3f.tmp'), '{');
    expect((await store.list('final/')).map((o) => o.key)).toEqual(['final/model.safetensors']);
    expect(await readdir(join(dir.path, 'final'))).toHaveLength(2);
    expect(new TextDecoder().decode(await store.get('final/model.safetensors'))).toBe('weights');
  });
});
