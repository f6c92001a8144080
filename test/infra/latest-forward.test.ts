/**
 * models/<dataset>/latest.json only moves to a newer run, whichever finishes last. fauxqs (the local S3 server)
 * ignores If-Match / If-None-Match on PutObject and keeps no object versions, so the client here adds both as S3
 * documents them: a conditional PutObject is checked and written under one lock per key (S3 does it atomically) and
 * fails with 412 PreconditionFailed when its condition does not hold, and HeadObject of a captions.csv version
 * answers that version's upload time. Against AWS itself, the conditional writes are not exercised here.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { HeadObjectCommand, type PutObjectCommandInput, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalS3, type LocalS3 } from '../../cli/local-s3.ts';
import { makeS3Client } from '../../core/s3-client.ts';
import { captionsKey, modelLatestKey } from '../../core/s3-layout.ts';
import { sha256Hex } from '../../core/store.ts';
import { publishRun, type LatestModel } from '../../lambdas/publish/publish.ts';

let s3: LocalS3;
let client: S3Client;
/** Upload time of each captions.csv version id. */
const versions = new Map<string, Date>();
/** Conditional puts refused, and the entries written to latest.json keys, in order. */
const conditional = { refused: 0, written: [] as LatestModel[] };

const isNotFound = (e: unknown) => (e as { name?: string }).name === 'NotFound';

function emulateS3(c: S3Client): void {
  const locks = new Map<string, Promise<void>>();
  c.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as PutObjectCommandInput & { VersionId?: string };
      if (context.commandName === 'HeadObjectCommand' && input.VersionId) {
        const at = versions.get(input.VersionId);
        if (!at) throw Object.assign(new Error('Not Found'), { name: 'NotFound' });
        return { output: { $metadata: {}, LastModified: at, VersionId: input.VersionId }, response: {} } as never;
      }
      if (context.commandName !== 'PutObjectCommand' || !(input.IfMatch || input.IfNoneMatch)) return next(args);
      // Lets concurrent publishers all read latest.json before the first of them writes.
      await sleep(10);
      const held = locks.get(input.Key!) ?? Promise.resolve();
      let release!: () => void;
      const mine = new Promise<void>((resolve) => (release = resolve));
      locks.set(input.Key!, held.then(() => mine));
      await held;
      try {
        const head = await c.send(new HeadObjectCommand({ Bucket: input.Bucket, Key: input.Key })).catch((e: unknown) => {
          if (isNotFound(e)) return undefined;
          throw e;
        });
        if (input.IfNoneMatch === '*' ? head !== undefined : input.IfMatch !== head?.ETag) {
          conditional.refused++;
          throw Object.assign(new Error('At least one of the pre-conditions you specified did not hold'), {
            name: 'PreconditionFailed',
            $metadata: { httpStatusCode: 412 },
          });
        }
        const result = await next(args);
        conditional.written.push(JSON.parse(String(input.Body)) as LatestModel);
        return result;
      } finally {
        release();
      }
    },
    { step: 'initialize', name: 'emulateS3ConditionalWritesAndVersions' },
  );
}

beforeAll(async () => {
  s3 = await startLocalS3('latest-forward-test');
  client = makeS3Client();
  emulateS3(client);
});
afterAll(async () => {
  client?.destroy();
  await s3?.stop();
});

const model = new Uint8Array(4096).map((_, i) => (i * 7) % 253);
const recall = (mean: number) => ({ mean_recall: mean });

async function writeFinal(runId: string): Promise<void> {
  const files = {
    'model.safetensors': model,
    'image_encoder.onnx': 'onnx-image',
    'text_encoder.onnx': 'onnx-text',
    'README.md': '# model card',
    'metrics.json': JSON.stringify({ model: 'ViT-tiny', steps: 2, before: recall(10), after: recall(30), sha256: sha256Hex(model) }),
  };
  for (const [name, body] of Object.entries(files)) await s3.store.put(`runs/${runId}/final/${name}`, body);
}

interface Run {
  runId: string;
  /** The execution's start. */
  startedAt: string;
  /** The captions.csv version the run read, uploaded at `uploadedAt`; none: an unversioned bucket. */
  version?: { id: string; uploadedAt: string };
}

async function publish(dataset: string, run: Run) {
  await writeFinal(run.runId);
  if (run.version) versions.set(run.version.id, new Date(run.version.uploadedAt));
  const trigger = { key: captionsKey(dataset), ...(run.version ? { versionId: run.version.id } : {}) };
  return publishRun({ runId: run.runId, bucket: s3.bucket, dataset, trigger, startedAt: run.startedAt }, s3.store, client);
}

async function latest(dataset: string): Promise<LatestModel> {
  return JSON.parse(new TextDecoder().decode(await s3.store.get(modelLatestKey(dataset)))) as LatestModel;
}

describe('models/<dataset>/latest.json', () => {
  // v1 was uploaded first, but its run started after v2's (a redelivered event, a slow Validate).
  const v1: Run = { runId: 'ds-v1', startedAt: '2026-03-01T10:07:00.000Z', version: { id: 'v1', uploadedAt: '2026-03-01T10:00:00.000Z' } };
  const v2: Run = { runId: 'ds-v2', startedAt: '2026-03-01T10:06:00.000Z', version: { id: 'v2', uploadedAt: '2026-03-01T10:05:00.000Z' } };

  it('stays on the run of the newer upload when an older one publishes after it', async () => {
    const first = await publish('order', v2);
    expect(first.supersededBy).toBeUndefined();
    const second = await publish('order', v1);
    expect(second).toMatchObject({ runId: 'ds-v1', supersededBy: 'ds-v2', dataUploadedAt: '2026-03-01T10:00:00.000Z' });
    expect(await latest('order')).toMatchObject({ runId: 'ds-v2', dataUploadedAt: '2026-03-01T10:05:00.000Z', startedAt: v2.startedAt });
  });

  it('moves to a run of a newer upload, and to a later run of the same upload (a scheduled retrain)', async () => {
    const v3: Run = { runId: 'ds-v3', startedAt: '2026-03-01T10:11:00.000Z', version: { id: 'v3', uploadedAt: '2026-03-01T10:10:00.000Z' } };
    expect((await publish('order', v3)).supersededBy).toBeUndefined();
    expect((await latest('order')).runId).toBe('ds-v3');

    const retrain: Run = { runId: 'ds-v3-retrain', startedAt: '2026-03-08T00:00:00.000Z', version: v3.version };
    expect((await publish('order', retrain)).supersededBy).toBeUndefined();
    expect(await latest('order')).toMatchObject({ runId: 'ds-v3-retrain', dataUploadedAt: v3.version!.uploadedAt });
    // The earlier run of that upload, published again (a retried Publish), does not take it back.
    expect((await publish('order', v3)).supersededBy).toBe('ds-v3-retrain');
    // The same run publishing again rewrites its own entry.
    expect((await publish('order', retrain)).supersededBy).toBeUndefined();
  });

  it('orders runs by their start when the captions.csv version is unknown, and replaces an entry from before runs were ordered', async () => {
    await s3.store.put(modelLatestKey('unversioned'), JSON.stringify({ runId: 'legacy', model: 'runs/legacy/final/model.safetensors' }));
    const late: Run = { runId: 'u-late', startedAt: '2026-03-02T12:00:00.000Z' };
    const early: Run = { runId: 'u-early', startedAt: '2026-03-02T09:00:00.000Z' };
    expect((await publish('unversioned', late)).supersededBy).toBeUndefined();
    expect(await publish('unversioned', early)).toMatchObject({ supersededBy: 'u-late', dataUploadedAt: early.startedAt });
    expect(await latest('unversioned')).toMatchObject({ runId: 'u-late', dataUploadedAt: late.startedAt });
  });

  it('ends at the newest run when runs publish at once, retrying the writes that lost, and never moves back', async () => {
    const runs: Run[] = Array.from({ length: 6 }, (_, i) => ({
      runId: `c-${i}`,
      startedAt: new Date(Date.UTC(2026, 2, 3, 8, i * 5)).toISOString(),
      version: { id: `c-v${i}`, uploadedAt: new Date(Date.UTC(2026, 2, 3, 8, i * 5 - 1)).toISOString() },
    }));
    conditional.refused = 0;
    conditional.written = [];
    const results = await Promise.all([3, 0, 5, 1, 4, 2].map((i) => publish('concurrent', runs[i]!)));

    expect((await latest('concurrent')).runId).toBe('c-5');
    expect(results.find((r) => r.runId === 'c-5')!.supersededBy).toBeUndefined();
    for (const r of results) if (r.supersededBy) expect(r.supersededBy > r.runId).toBe(true);
    // Every publisher read before the first write landed, so writes lost and were retried from a fresh read.
    expect(conditional.refused).toBeGreaterThan(0);
    const written = conditional.written.map((e) => e.runId);
    expect(written.at(-1)).toBe('c-5');
    expect(written).toEqual([...written].sort());
  });
});
