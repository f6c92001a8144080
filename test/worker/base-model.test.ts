import { afterAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../core/store.ts';
import { writeSafetensors } from '../../core/tensors/safetensors.ts';
import { loadModelConfig } from '../../core/model-config/config.ts';
import { latestModel } from '../../core/latest-model.ts';
import { chooseModel, loadBaseModel } from '../../worker/train/base-model.ts';
import { TrainInputError } from '../../core/run-errors.ts';
import { chunkEnd } from '../../worker/train/loop.ts';
import { tempDir } from './helpers.ts';

describe('base model', () => {
  const dir = tempDir('base');
  afterAll(dir.cleanup);

  it('chooses the config: explicit, random:<name>, from the file name, else ViT-B-32', () => {
    expect(chooseModel('random:ViT-tiny').name).toBe('ViT-tiny');
    expect(chooseModel('s3://b/RemoteCLIP-RN50.pt').name).toBe('RN50');
    expect(chooseModel('/m/RemoteCLIP-ViT-B-32.pt').name).toBe('ViT-B-32');
    expect(chooseModel('/m/RemoteCLIP-ViT-L-14.pt').name).toBe('ViT-L-14');
    expect(chooseModel('/m/model.safetensors').name).toBe('ViT-B-32');
    expect(chooseModel('/m/model.safetensors', 'ViT-tiny').name).toBe('ViT-tiny');
    expect(() => chooseModel('random:ViT-nope')).toThrow(TrainInputError);
  });

  it('initialises random models by seed and loads safetensors checkpoints', async () => {
    const config = loadModelConfig('ViT-tiny');
    const a = await loadBaseModel('random:ViT-tiny', config, 1);
    const b = await loadBaseModel('random:ViT-tiny', config, 1);
    const c = await loadBaseModel('random:ViT-tiny', config, 2);
    expect(a.get('visual.proj')!.data).toEqual(b.get('visual.proj')!.data);
    expect(a.get('visual.proj')!.data).not.toEqual(c.get('visual.proj')!.data);
    const store = new FsStore(dir.path);
    await store.put('m.safetensors', writeSafetensors(a));
    const back = await loadBaseModel(`${dir.path}/m.safetensors`, config, 0);
    expect(back.get('visual.proj')!.data).toEqual(a.get('visual.proj')!.data);
    await expect(loadBaseModel(`${dir.path}/missing.pt`, config, 0)).rejects.toThrow(/base model not found/);
  });

  it('"latest" resolves models/<dataset>/latest.json to its model and config name', async () => {
    const bucket = new FsStore(dir.path);
    await expect(latestModel(bucket, 'ds')).rejects.toThrow(/models\/ds\/latest\.json does not exist/);
    await bucket.put('models/ds/latest.json', JSON.stringify({ runId: 'r', model: 'runs/r/final/model.safetensors', metrics: { model: 'ViT-tiny' } }));
    expect(await latestModel(bucket, 'ds')).toEqual({ uri: `${dir.path}/runs/r/final/model.safetensors`, modelName: 'ViT-tiny' });
  });
});

describe('chunking of steps into engine runs', () => {
  const plan = { batchSize: 8, stepsPerEpoch: 7, epochs: 3, totalSteps: 20, warmupSteps: 2 };
  it('cuts at run size, checkpoints, epoch ends and the last step, by absolute step only', () => {
    const cuts: number[] = [];
    for (let s = 0; s < plan.totalSteps; s = chunkEnd(s, plan, 4, 5)) cuts.push(chunkEnd(s, plan, 4, 5));
    expect(cuts).toEqual([4, 5, 7, 8, 10, 12, 14, 15, 16, 20]);
    // A run resumed at checkpoint 10 cuts exactly where the uninterrupted one did.
    expect(chunkEnd(10, plan, 4, 5)).toBe(12);
  });
});
