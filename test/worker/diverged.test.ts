import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalS3, type LocalS3 } from '../../cli/local-s3.ts';
import { runPrefix, shardsPrefix } from '../../core/s3-layout.ts';
import { TrainOptionsSchema } from '../../core/train-options.ts';
import { silentLogger } from '../../worker/train/log.ts';
import { runTraining } from '../../worker/train/run.ts';
import { sceneShards, writeShards } from './helpers.ts';

describe('a diverging run is never published', () => {
  let s3: LocalS3;
  beforeAll(async () => {
    s3 = await startLocalS3('diverged-test');
  });
  afterAll(async () => s3?.stop());

  it('lr 1e30 fails with a one-line TrainInputError and leaves no final/ and no checkpoint', async () => {
    const runId = 'nan-0123456789ab';
    await writeShards(s3.store.child(shardsPrefix(runId)), sceneShards({ perClass: 4, valPerClass: 1, size: 32, shards: 1 }));
    const run = runTraining(
      { runId, bucket: s3.bucket, dataset: 'nan', options: { init: 'random:ViT-tiny', maxSteps: 3, batchSize: 8, lr: 1e30, warmupSteps: 0, seed: 1 } },
      { bucket: s3.store, log: silentLogger },
    );
    await expect(run).rejects.toMatchObject({ name: 'TrainInputError', message: expect.stringMatching(/^training diverged: .*(loss is NaN|not finite)/) });
    const keys = await s3.store.child(runPrefix(runId)).list('');
    expect(keys.map((o) => o.key).filter((k) => !k.startsWith('shards/'))).toEqual([]);
  }, 120_000);

  it('train.json rejects beta1 or beta2 of 1 (bias correction divides by zero)', () => {
    expect(TrainOptionsSchema.safeParse({ beta1: 1 }).success).toBe(false);
    expect(TrainOptionsSchema.safeParse({ beta2: 1 }).success).toBe(false);
    expect(TrainOptionsSchema.safeParse({ beta1: 0.9, beta2: 0.999 }).success).toBe(true);
  });
});
