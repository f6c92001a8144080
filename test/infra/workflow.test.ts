import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDemoDataset } from '../../cli/demo-data/generate.ts';
import { drainCreatedObjects, startLocalS3, uploadFolder, type InProcessS3 } from '../../cli/local-s3.ts';
import { resolveDefinition } from '../../cdk/local/asl.ts';
import { READ_ITEMS } from '../../cdk/local/rewrite.ts';
import { LocalPipeline, runWorkflowLocally, type Intercept, type JobAccess } from '../../cdk/local/run-workflow.ts';
import { synthesizeTemplate } from '../../cdk/local/synth.ts';
import { STATE } from '../../cdk/workflow.ts';
import type { RunSpec } from '../../core/run-spec.ts';
import { captionsKey, datasetPrefix, modelLatestKey, shardPlanKey, shardsPrefix, validationKey } from '../../core/s3-layout.ts';
import type { TrainOptions } from '../../core/train-options.ts';
import { handlerS3Client } from '../../core/s3-client.ts';
import { S3Store } from '../../core/store.ts';
import { silentLogger } from '../../worker/train/log.ts';
import { runTraining, type TrainOutput } from '../../worker/train/run.ts';

let s3: InProcessS3;
let data: string;

// 8 land-cover classes x 2 tiles of 32 px: 16 images, 8 of them in validation.
const TINY: TrainOptions = { model: 'ViT-tiny', init: 'random:ViT-tiny', maxSteps: 2, batchSize: 8, shardSize: 12, seed: 1 };

beforeAll(async () => {
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  s3 = await startLocalS3('workflow-test');
  data = await mkdtemp(join(tmpdir(), 'rsclip-infra-data-'));
  await generateDemoDataset(data, { perClass: 2, valPerClass: 1, testPerClass: 0, size: 32, seed: 3 });
});
afterAll(async () => {
  await s3?.stop();
  if (data) await rm(data, { recursive: true, force: true });
});

/** Uploads the dataset as a user would (captions.csv last) and returns the puts the S3 server saw. */
async function upload(dataset: string, options: TrainOptions, csv?: string) {
  const replace = new Map<string, string>([['train.json', JSON.stringify(options)]]);
  if (csv !== undefined) replace.set('captions.csv', csv);
  s3.server.spy.clear();
  await uploadFolder(s3, datasetPrefix(dataset), data, { replace });
  return drainCreatedObjects(s3);
}

/** The worker as the Batch job runs it: reaching S3 as the run's own role. */
const realWorker = (spec: RunSpec, access: JobAccess): Promise<TrainOutput> => runTraining(spec, { bucket: access.store, log: silentLogger });

describe('the synthesized state machine, run locally with the real handlers', () => {
  it('publishes a model from an upload, retrying a failed shard, and starts one run for a duplicate event', async () => {
    const shardCalls: number[] = [];
    let failedOnce = false;
    const intercept: Intercept = async (state, input, next) => {
      if (state === 'ShardOne') {
        const { shard } = input as { shard: number };
        shardCalls.push(shard);
        if (shard === 1 && !failedOnce) {
          failedOnce = true;
          throw Object.assign(new Error('injected: S3 SlowDown'), { name: 'SlowDown' });
        }
      }
      return next(input);
    };
    const pipeline = new LocalPipeline({ train: realWorker, intercept });
    const puts = await upload('tiles', TINY);
    expect(puts.length).toBeGreaterThan(16);

    const routed = (await Promise.all(puts.map((p) => pipeline.objectCreated(p)))).flat();
    const started = routed.filter((r) => r.status === 'started');
    expect(started).toEqual([expect.objectContaining({ key: captionsKey('tiles') })]);
    const runId = (started[0] as { runId: string }).runId;
    // EventBridge delivers at least once: the same event again must not start a second run.
    const captionsPut = puts.find((p) => p.key === captionsKey('tiles'))!;
    expect(await pipeline.objectCreated(captionsPut)).toEqual([{ status: 'duplicate', runId, key: captionsKey('tiles') }]);
    expect(pipeline.runIds).toEqual([runId]);

    const result = await pipeline.result(runId);
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('SUCCEEDED');

    const plan = JSON.parse(new TextDecoder().decode(await s3.store.get(shardPlanKey(runId)))) as unknown[];
    expect(plan.length).toBeGreaterThan(1);
    expect((await s3.store.list(`${shardsPrefix(runId)}/`)).filter((o) => o.key.endsWith('.rsshard'))).toHaveLength(plan.length);
    // Every shard once, and shard 1 once more after its injected failure.
    expect(shardCalls.sort((a, b) => a - b)).toEqual([...plan.keys(), 1].sort((a, b) => a - b));

    const latest = JSON.parse(new TextDecoder().decode(await s3.store.get(modelLatestKey('tiles'))));
    expect(result.output).toEqual(latest);
    expect(latest.model).toBe(`runs/${runId}/final/model.safetensors`);
    expect(latest.sha256).toBe(result.train!.sha256);
    expect(result.train!.steps).toBe(2);
    expect(latest.metrics.after.mean_recall).toBe(result.train!.after.mean_recall);
    expect(result.notifications).toEqual([
      { state: 'NotifySuccess', subject: 'rsclip: model published', message: { runId, dataset: 'tiles', model: latest.model, sha256: latest.sha256 } },
    ]);
  });

  it('ends a malformed CSV in the Fail state with its reason, before any shard or training', async () => {
    let trained = false;
    const csv = 'filename,caption,split\nimages/nope.png,a tile,train\n"unterminated,quote\n';
    await upload('broken', TINY, csv);
    const result = await runWorkflowLocally({
      bucket: s3.bucket,
      key: captionsKey('broken'),
      train: async () => {
        trained = true;
        return {};
      },
    });
    expect(result.status).toBe('FAILED');
    expect(result.error!.name).toBe('DatasetInvalid');
    expect(result.error!.cause).toMatch(/line [23]/);
    expect(trained).toBe(false);
    expect(await s3.store.list(`${shardsPrefix(result.runId)}/`)).toEqual([]);
    expect(await s3.store.head(validationKey(result.runId))).toBeDefined();
    expect(result.notifications).toEqual([
      { state: 'NotifyFailure', subject: 'rsclip: run failed', message: { runId: result.runId, error: 'DatasetInvalid', cause: result.error!.cause } },
    ]);
  });

  it('fails the run when a shard keeps failing after its retries', async () => {
    await upload('flaky', TINY);
    let attempts = 0;
    const result = await runWorkflowLocally({
      bucket: s3.bucket,
      key: captionsKey('flaky'),
      train: realWorker,
      intercept: async (state, input, next) => {
        if (state === 'ShardOne' && (input as { shard: number }).shard === 0) {
          attempts++;
          throw Object.assign(new Error('image decoder crashed'), { name: 'ShardFailed' });
        }
        return next(input);
      },
    });
    // The deployed Map tolerates no failed item: the Map Run fails, naming the item's error in the cause.
    expect(result).toMatchObject({ status: 'FAILED', error: { name: 'States.ExceedToleratedFailureThreshold' } });
    expect(result.error!.cause).toMatch(/first failure: ShardFailed: image decoder crashed$/);
    expect(attempts).toBe(4); // the first try and 3 retries
    expect(result.train).toBeUndefined();
  });

  it("fails the run with the worker's error when training cannot start", async () => {
    await upload('nobase', { ...TINY, init: 'random:No-Such-Model', model: undefined });
    const result = await runWorkflowLocally({ bucket: s3.bucket, key: captionsKey('nobase'), train: realWorker });
    expect(result.status).toBe('FAILED');
    expect(result.error!.cause).toMatch(/No-Such-Model/);
    expect(await s3.store.head(modelLatestKey('nobase'))).toBeUndefined();
  });

  it("trains as the run's own role: its keys only, a missing key it may not list is AccessDenied, and the role is gone after", async () => {
    await upload('scoped', TINY);
    const outcome = (p: Promise<unknown>) => p.then(() => 'allowed', (e: Error) => e.name);
    const result = await runWorkflowLocally({
      bucket: s3.bucket,
      key: captionsKey('scoped'),
      train: async (spec, access) => ({
        otherFinal: await outcome(access.store.put('runs/someone-else/final/model.safetensors', 'x')),
        otherCheckpoint: await outcome(access.store.delete('runs/someone-else/checkpoints/latest.json')),
        captions: await outcome(access.store.get(captionsKey('scoped'))),
        latest: await outcome(access.store.put(modelLatestKey('scoped'), '{}')),
        // S3 answers 403, not 404, for a missing key the role may not list.
        missingOther: await outcome(access.store.tryGet('runs/someone-else/checkpoints/latest.json')),
        missingOwn: await access.store.tryGet(`runs/${spec.runId}/checkpoints/latest.json`),
        trained: await realWorker(spec, access),
      }),
    });
    expect(result.status).toBe('SUCCEEDED');
    expect(result.train).toMatchObject({
      otherFinal: 'AccessDenied',
      otherCheckpoint: 'AccessDenied',
      captions: 'AccessDenied',
      latest: 'AccessDenied',
      missingOther: 'AccessDenied',
      missingOwn: undefined,
      trained: { steps: 2 },
    });
    expect(result.runAccessLeft).toEqual([]);
  });

  it("runs each Lambda as its function's role: Validate may not write models/ or read a run's final/", async () => {
    await upload('lambdarole', TINY);
    const outcome = (p: Promise<unknown>) => p.then(() => 'allowed', (e: Error) => e.name);
    let validateMay: Record<string, string> = {};
    const result = await runWorkflowLocally({
      bucket: s3.bucket,
      key: captionsKey('lambdarole'),
      train: realWorker,
      intercept: async (state, input, next) => {
        if (state === STATE.validate) {
          const asValidate = new S3Store(s3.bucket, '', handlerS3Client());
          validateMay = {
            latest: await outcome(asValidate.put(modelLatestKey('lambdarole'), '{}')),
            final: await outcome(asValidate.get('runs/other/final/model.safetensors')),
            captions: await outcome(asValidate.get(captionsKey('lambdarole'))),
          };
        }
        return next(input);
      },
    });
    expect(validateMay).toEqual({ latest: 'AccessDenied', final: 'AccessDenied', captions: 'allowed' });
    expect(result.status).toBe('SUCCEEDED');
  });

  it("starts a run from init latest: Validate resolves it to the published model and its config, the one model the run role may read", async () => {
    await upload('chain', TINY);
    const first = await runWorkflowLocally({ bucket: s3.bucket, key: captionsKey('chain'), train: realWorker });
    expect(first.status).toBe('SUCCEEDED');
    await upload('chain', { ...TINY, init: 'latest', model: undefined, seed: 2 });
    let spec: RunSpec | undefined;
    const second = await runWorkflowLocally({
      bucket: s3.bucket,
      key: captionsKey('chain'),
      // The trigger would name it by train.json's version too; runWorkflowLocally's default looks at captions.csv only.
      runId: 'chain-from-latest',
      train: async (s, access) => {
        spec = s;
        return realWorker(s, access);
      },
    });
    expect(second.error).toBeUndefined();
    expect(second.status).toBe("SUCCEEDED");
    // The worker was handed the model latest.json named, with the config its run recorded, not `latest`.
    expect(spec!.options).toMatchObject({ init: `s3://${s3.bucket}/runs/${first.runId}/final/model.safetensors`, model: 'ViT-tiny' });
    expect(second.runAccessLeft).toEqual([]);
  });

  it('revokes the run role when Train fails', async () => {
    await upload('trainfails', TINY);
    let roleArn = '';
    const result = await runWorkflowLocally({
      bucket: s3.bucket,
      key: captionsKey('trainfails'),
      train: async (_spec, access) => {
        roleArn = access.principal.name;
        throw Object.assign(new Error('CUDA error: out of memory'), { name: 'WorkerFailed' });
      },
    });
    expect(result).toMatchObject({ status: 'FAILED', error: { name: 'WorkerFailed' }, runAccessLeft: [] });
    expect(roleArn).toMatch(/^arn:aws:iam::000000000000:role\/rsclip\/runs\/rsclip-[0-9a-f]{8}-[0-9a-f]{32}$/);
    expect(result.notifications.map((n) => n.state)).toEqual([STATE.notifyFailure]);
  });

  it('enforces the 256 KiB payload quota: 2,000 shard results fail a Map without a ResultWriter, not the deployed one', async () => {
    const puts = await upload('many', TINY);
    const put = puts.find((p) => p.key === captionsKey('many'))!;
    // 2,000 plan items and a Shard result of the real one's size (~200 B) each, without building 2,000 shards.
    const intercept: Intercept = async (state, input, next) => {
      if (state === `${STATE.shard}${READ_ITEMS}`) {
        const [first] = (await next(input)) as Record<string, unknown>[];
        return Array.from({ length: 2000 }, (_, shard) => ({ ...first, shard }));
      }
      if (state === STATE.shardOne) {
        const { shard } = input as { shard: number };
        return { shard, key: `runs/many-0123456789ab/shards/shard-${String(shard).padStart(5, '0')}.rsshard`, rows: 256, images: 52, bytes: 38535424, sha256: 'a'.repeat(64) };
      }
      if (state === STATE.collect) return { rows: 512_000, images: 104_000, shards: 2000, badRows: 0 };
      if (state === STATE.publish) return { model: 'models/many/latest.json', sha256: 'b'.repeat(64) };
      return next(input);
    };
    const deployed = resolveDefinition(synthesizeTemplate('aws'), s3.bucket) as unknown as { States: Record<string, Record<string, unknown>> };
    expect(deployed.States[STATE.shard]!.ResultWriter).toMatchObject({ Parameters: { 'Prefix.$': '$.shardResultsPrefix' } });
    const oldShape = structuredClone(deployed);
    delete oldShape.States[STATE.shard]!.ResultWriter;
    const run = (definition: typeof deployed) =>
      runWorkflowLocally({ bucket: put.bucket, key: put.key, train: async () => 'not trained', intercept, definition: definition as never });

    const old = await run(oldShape);
    expect(old.status).toBe('FAILED');
    expect(old.error?.name).toBe('States.DataLimitExceeded');
    expect(old.error?.cause).toBe("state Shard: its iterations' results gathered are over Step Functions' limit of 262144 bytes; a Distributed Map needs a ResultWriter");
    expect(old.train).toBeUndefined();

    const current = await run(deployed);
    expect(current.error).toBeUndefined();
    expect(current.status).toBe('SUCCEEDED');
    expect(current.train).toBe('not trained');
  }, 120_000);
});
