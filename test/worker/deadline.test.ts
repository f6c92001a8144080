import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalS3, type LocalS3 } from '../../cli/local-s3.ts';
import { shardsPrefix } from '../../core/s3-layout.ts';
import type { RunSpec } from '../../core/run-spec.ts';
import { attemptDeadline } from '../../worker/main.ts';
import { silentLogger } from '../../worker/train/log.ts';
import { runTraining } from '../../worker/train/run.ts';
import { sceneShards, writeShards } from './helpers.ts';

describe('an attempt that reaches its deadline', () => {
  let s3: LocalS3;
  beforeAll(async () => {
    s3 = await startLocalS3('deadline-test');
  });
  afterAll(async () => s3?.stop());

  const spec = (runId: string): RunSpec => ({
    runId,
    bucket: s3.bucket,
    dataset: 'dl',
    options: { init: 'random:ViT-tiny', maxSteps: 4, batchSize: 8, lr: 1e-3, warmupSteps: 1, seed: 2 },
  });

  it('checkpoints and stops after one chunk, and the next attempt ends with the model of an uninterrupted run', async () => {
    const shards = sceneShards({ perClass: 4, valPerClass: 1, size: 32, shards: 2 });
    for (const id of ['dl-whole-0123456789', 'dl-split-0123456789']) await writeShards(s3.store.child(shardsPrefix(id)), shards);
    const whole = await runTraining(spec('dl-whole-0123456789'), { bucket: s3.store, log: silentLogger });

    const events: Record<string, unknown>[] = [];
    const log = (e: Record<string, unknown>) => void events.push(e);
    const first = runTraining(spec('dl-split-0123456789'), { bucket: s3.store, log, deadline: Date.now() });
    await expect(first).rejects.toMatchObject({ name: 'AttemptDeadline', step: 1 });
    expect(events.filter((e) => e.event === 'checkpoint').map((e) => e.step)).toEqual([1]);

    const resumed = await runTraining(spec('dl-split-0123456789'), { bucket: s3.store, log: silentLogger });
    expect(resumed.steps).toBe(4);
    expect(resumed.sha256).toBe(whole.sha256);
  }, 180_000);

  it('takes its deadline from ATTEMPT_TIMEOUT_SECONDS, less a margin for the last checkpoint', () => {
    expect(attemptDeadline({})).toBeUndefined();
    expect(attemptDeadline({ ATTEMPT_TIMEOUT_SECONDS: '43200' }, 0)).toBe((43200 - 1800) * 1000);
    expect(attemptDeadline({ ATTEMPT_TIMEOUT_SECONDS: '3600' }, 0)).toBe((3600 - 360) * 1000);
    expect(attemptDeadline({ ATTEMPT_TIMEOUT_SECONDS: '600' }, 0)).toBe(300 * 1000);
    expect(() => attemptDeadline({ ATTEMPT_TIMEOUT_SECONDS: 'soon' })).toThrow(/ATTEMPT_TIMEOUT_SECONDS must be a positive number/);
  });
});
