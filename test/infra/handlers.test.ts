import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalS3, type LocalS3 } from '../../cli/local-s3.ts';
import { modelLatestKey } from '../../core/s3-layout.ts';
import { sha256Hex } from '../../core/store.ts';
import { handler } from '../../lambdas/publish/handler.ts';
import { objectCreatedEvent } from '../../cdk/local/event-routing.ts';
import { trigger } from '../../lambdas/trigger/handler.ts';
import type { StartExecution } from '../../lambdas/trigger/start-run.ts';

let s3: LocalS3;
beforeAll(async () => {
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  s3 = await startLocalS3('handlers-test');
});
afterAll(async () => s3?.stop());

const model = new Uint8Array(70_000).map((_, i) => (i * 31) % 251);
const recall = (mean: number) => ({ mean_recall: mean, 'image_to_text_R@1': mean / 2 });

async function writeFinal(runId: string, files: Record<string, Uint8Array | string>): Promise<void> {
  for (const [name, body] of Object.entries(files)) await s3.store.put(`runs/${runId}/final/${name}`, body);
}

const complete = (sha256 = sha256Hex(model)) => ({
  'model.safetensors': model,
  'image_encoder.onnx': 'onnx-image',
  'text_encoder.onnx': 'onnx-text',
  'README.md': '# model card',
  'metrics.json': JSON.stringify({ model: 'ViT-tiny', steps: 12, before: recall(10), after: recall(40), sha256 }),
});

describe('Publish handler', () => {
  it('points models/<dataset>/latest.json at a complete run', async () => {
    await writeFinal('rs-1', complete());
    const out = await handler({ runId: 'rs-1', bucket: s3.bucket, dataset: 'rs' });
    const latest = JSON.parse(new TextDecoder().decode(await s3.store.get(modelLatestKey('rs'))));
    expect(latest).toEqual(out);
    expect(latest).toMatchObject({
      runId: 'rs-1',
      model: 'runs/rs-1/final/model.safetensors',
      sha256: sha256Hex(model),
      metrics: { model: 'ViT-tiny', steps: 12, before: recall(10), after: recall(40) },
    });
    expect(Date.parse(latest.publishedAt)).not.toBeNaN();
  });

  it('refuses a run whose final/ lacks a file, and leaves latest.json alone', async () => {
    const files: Record<string, Uint8Array | string> = complete();
    delete files['text_encoder.onnx'];
    await writeFinal('rs-2', files);
    await expect(handler({ runId: 'rs-2', bucket: s3.bucket, dataset: 'rs' })).rejects.toMatchObject({
      name: 'RunIncomplete',
      message: expect.stringContaining('lacks text_encoder.onnx'),
    });
    const latest = JSON.parse(new TextDecoder().decode(await s3.store.get(modelLatestKey('rs'))));
    expect(latest.runId).toBe('rs-1');
  });

  it('refuses a model whose bytes do not hash to what the worker recorded', async () => {
    await writeFinal('rs-3', complete('0'.repeat(64)));
    await expect(handler({ runId: 'rs-3', bucket: s3.bucket, dataset: 'rs' })).rejects.toThrow(/hashes to [0-9a-f]{64}, but metrics.json records 0{64}/);
  });

  it('refuses metrics.json without before/after mean recall', async () => {
    await writeFinal('rs-4', { ...complete(), 'metrics.json': JSON.stringify({ after: { R1: 3 } }) });
    await expect(handler({ runId: 'rs-4', bucket: s3.bucket, dataset: 'rs' })).rejects.toThrow(/lacks before\/after.mean_recall/);
  });
});

describe('trigger on the retraining schedule', () => {
  it('starts one run per dataset and tick, skipping datasets that are gone', async () => {
    await s3.store.put('datasets/kept/captions.csv', 'filename,caption\na.png,a field\n');
    const names: string[] = [];
    const start: StartExecution = async (name) => {
      if (names.includes(name)) throw Object.assign(new Error('exists'), { name: 'ExecutionAlreadyExists' });
      names.push(name);
    };
    const tick = (time: string) => ({ source: 'rsclip.schedule' as const, bucket: s3.bucket, datasets: ['kept', 'gone'], time });
    const first = await trigger(tick('2026-11-01T00:00:00Z'), start);
    expect(first).toEqual([
      { status: 'started', runId: expect.stringMatching(/^kept-[0-9a-f]{12}$/), key: 'datasets/kept/captions.csv' },
      { status: 'ignored', key: 'datasets/gone/captions.csv' },
    ]);
    expect((await trigger(tick('2026-11-01T00:00:00Z'), start))[0]).toMatchObject({ status: 'duplicate' });
    expect((await trigger(tick('2026-11-08T00:00:00Z'), start))[0]).toMatchObject({ status: 'started' });
    expect(names).toHaveLength(2);
  });
});

describe('trigger on an upload whose key holds + or %', () => {
  it('uses the key as EventBridge gives it (not URL-encoded), so `my data` and `my+data` are two datasets', async () => {
    await s3.store.put('datasets/my data/captions.csv', 'filename,caption\na.png,a field\n');
    await s3.store.put('datasets/c++/captions.csv', 'filename,caption\na.png,a field\n');
    const started: { name: string; input: { key: string } }[] = [];
    const start: StartExecution = async (name, input) => {
      if (started.some((s) => s.name === name)) throw Object.assign(new Error('exists'), { name: 'ExecutionAlreadyExists' });
      started.push({ name, input: JSON.parse(input) });
    };
    const upload = (key: string) => trigger(objectCreatedEvent({ bucket: s3.bucket, key, etag: '"0cc175b9c0f1b6a831c399e269772661"' }), start);
    expect(await upload('datasets/my data/captions.csv')).toEqual([{ status: 'started', runId: expect.any(String), key: 'datasets/my data/captions.csv' }]);
    expect(await upload('datasets/my data/captions.csv')).toMatchObject([{ status: 'duplicate' }]);
    // Form-encoded spellings name other objects, which do not exist.
    expect(await upload('datasets/my+data/captions.csv')).toEqual([{ status: 'ignored', key: 'datasets/my+data/captions.csv' }]);
    expect(await upload('datasets/my%20data/captions.csv')).toEqual([{ status: 'ignored', key: 'datasets/my%20data/captions.csv' }]);
    expect(await upload('datasets/c++/captions.csv')).toMatchObject([{ status: 'started', key: 'datasets/c++/captions.csv' }]);
    expect(await upload('datasets/c%2B%2B/captions.csv')).toEqual([{ status: 'ignored', key: 'datasets/c%2B%2B/captions.csv' }]);
    expect(started.map((s) => s.input.key)).toEqual(['datasets/my data/captions.csv', 'datasets/c++/captions.csv']);
  });
});

describe('trigger on a multipart upload', () => {
  it('hashes the bytes when the ETag is not their MD5, so the same file uploaded with other part sizes is one run', async () => {
    const key = 'datasets/big/captions.csv';
    await s3.store.put(key, 'filename,caption\na.png,a field\n');
    const started: string[] = [];
    const start: StartExecution = async (name) => {
      if (started.includes(name)) throw Object.assign(new Error('exists'), { name: 'ExecutionAlreadyExists' });
      started.push(name);
    };
    const upload = (etag?: string) => trigger(objectCreatedEvent({ bucket: s3.bucket, key, etag }), start);
    expect(await upload('"9b2cf535f27731c974343645a3985328-2"')).toMatchObject([{ status: 'started' }]);
    expect(await upload('"5d41402abc4b2a76b9719d911017c592-3"')).toMatchObject([{ status: 'duplicate' }]);
    expect(await upload()).toMatchObject([{ status: 'duplicate' }]);
    await s3.store.put(key, 'filename,caption\na.png,a river\n');
    expect(await upload('"9b2cf535f27731c974343645a3985328-2"')).toMatchObject([{ status: 'started' }]);
    expect(started).toHaveLength(2);
  });
});
