/**
 * A run id is both the Step Functions execution name and the Batch job name, so it must pass both services' name
 * rules whatever the dataset is called: S3 keys allow any UTF-8, the two rules allow a few ASCII characters.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDemoDataset } from '../../cli/demo-data/generate.ts';
import { drainCreatedObjects, startLocalS3, uploadFolder, type InProcessS3 } from '../../cli/local-s3.ts';
import { checkBatchJobName, checkExecutionName } from '../../cdk/local/aws-rules.ts';
import { LocalPipeline } from '../../cdk/local/run-workflow.ts';
import { STATE } from '../../cdk/workflow.ts';
import { RunSpecSchema, type RunSpec } from '../../core/run-spec.ts';
import { captionsKey, datasetPrefix, modelLatestKey } from '../../core/s3-layout.ts';
import { sha256Hex } from '../../core/store.ts';
import { runFor } from '../../lambdas/trigger/run-id.ts';

const DATASETS: [label: string, name: string][] = [
  ['a leading underscore and accents', '_été'],
  ['a leading hyphen', '-x'],
  ['no ASCII at all', '東京'],
  ['a space', 'a b'],
  ['300 characters', 'sentinel-2 tiles, '.repeat(17).slice(0, 300)],
];

describe('run ids', () => {
  it.each(DATASETS)('pass the execution-name and job-name rules for a dataset with %s', (_label, dataset) => {
    const run = runFor('data-bucket', captionsKey(dataset), 'md5:0123456789abcdef0123456789abcdef', 'version-1')!;
    expect(run.name).toBe(run.input.runId);
    expect(() => checkExecutionName(run.name)).not.toThrow();
    expect(() => checkBatchJobName(run.input.runId)).not.toThrow();
    // And the worker's RUN_SPEC schema, which carries it to the run's keys.
    expect(RunSpecSchema.shape.runId.safeParse(run.input.runId).success).toBe(true);
  });

  it('stay apart for datasets whose names reduce to the same characters', () => {
    const ids = ['_été', 'été', '-été', '東京', '大阪'].map((d) => runFor('data-bucket', captionsKey(d), 'md5:same')!.input.runId);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('a dataset named _été through the local pipeline', () => {
  let s3: InProcessS3;
  let data: string;
  beforeAll(async () => {
    process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    s3 = await startLocalS3('run-names-test');
    data = await mkdtemp(join(tmpdir(), 'rsclip-run-names-'));
    await generateDemoDataset(data, { perClass: 2, valPerClass: 1, testPerClass: 0, size: 32, seed: 5 });
  });
  afterAll(async () => {
    await s3?.stop();
    if (data) await rm(data, { recursive: true, force: true });
  });

  /** Stands in for the worker: the point is the job name reaching SubmitJob, so it only publishes a final/. */
  async function fakeTrain(spec: RunSpec): Promise<RunSpec> {
    const model = new Uint8Array(1024).fill(7);
    const metrics = { model: 'ViT-tiny', steps: 0, before: { mean_recall: 1 }, after: { mean_recall: 2 }, sha256: sha256Hex(model) };
    const files = { 'model.safetensors': model, 'image_encoder.onnx': 'i', 'text_encoder.onnx': 't', 'README.md': '#', 'metrics.json': JSON.stringify(metrics) };
    for (const [name, body] of Object.entries(files)) await s3.store.put(`runs/${spec.runId}/final/${name}`, body);
    return spec;
  }

  it('starts from the upload, submits a Batch job name the rule accepts, and publishes', async () => {
    const dataset = '_été';
    s3.server.spy.clear();
    await uploadFolder(s3, datasetPrefix(dataset), data);
    const puts = await drainCreatedObjects(s3);

    const jobNames: unknown[] = [];
    const pipeline = new LocalPipeline({
      train: fakeTrain,
      intercept: async (state, input, next) => {
        if (state === STATE.train) jobNames.push((input as { JobName?: unknown }).JobName);
        return next(input);
      },
    });
    const started = (await Promise.all(puts.map((p) => pipeline.objectCreated(p)))).flat().filter((r) => r.status === 'started');
    expect(started).toEqual([{ status: 'started', runId: expect.any(String), key: captionsKey(dataset) }]);
    const { runId } = started[0] as { runId: string };

    const result = await pipeline.result(runId);
    expect(result.error).toBeUndefined();
    expect(result.status).toBe('SUCCEEDED');
    expect(jobNames).toEqual([runId]);
    expect(() => checkBatchJobName(jobNames[0])).not.toThrow();
    expect(result.train).toMatchObject({ runId, dataset });
    const latest = JSON.parse(new TextDecoder().decode(await s3.store.get(modelLatestKey(dataset)))) as { runId: string };
    expect(latest.runId).toBe(runId);
  });
});
