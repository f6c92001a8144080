import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalS3, type LocalS3 } from '../../cli/local-s3.ts';
import { resolveDefinition } from '../../cdk/local/asl.ts';
import { matchesEventPattern, objectCreatedEvent, uploadRulePattern } from '../../cdk/local/event-routing.ts';
import { MAP_RUN_RESOURCE, rewriteForLocal } from '../../cdk/local/rewrite.ts';
import { synthesizeTemplate } from '../../cdk/local/synth.ts';
import { trigger } from '../../lambdas/trigger/handler.ts';
import { runContent, runFor } from '../../lambdas/trigger/run-id.ts';
import { checkBatchJobName, checkExecutionName } from '../../cdk/local/aws-rules.ts';
import type { StartExecution } from '../../lambdas/trigger/start-run.ts';

/** A StartExecution with Step Functions' name rule: a name used once is ExecutionAlreadyExists afterwards. */
function fakeStepFunctions(): { start: StartExecution; started: { name: string; input: unknown }[] } {
  const started: { name: string; input: unknown }[] = [];
  const start: StartExecution = async (name, input) => {
    if (!/^[A-Za-z0-9_-]{1,80}$/.test(name)) throw Object.assign(new Error(`bad name ${name}`), { name: 'InvalidName' });
    if (started.some((s) => s.name === name)) throw Object.assign(new Error('exists'), { name: 'ExecutionAlreadyExists' });
    started.push({ name, input: JSON.parse(input) });
  };
  return { start, started };
}

describe('S3 upload routing', () => {
  const pattern = uploadRulePattern(synthesizeTemplate('aws'), 'data');
  const routed = (key: string, bucket = 'data'): boolean =>
    matchesEventPattern(pattern, objectCreatedEvent({ bucket, key, etag: '"abc"' }));

  it("matches the upload rule only for a dataset's captions.csv in the data bucket", () => {
    expect(routed('datasets/uc-merced/captions.csv')).toBe(true);
    expect(routed('datasets/uc-merced/img/0001.png')).toBe(false);
    expect(routed('datasets/uc-merced/captions.csv.bak')).toBe(false);
    expect(routed('runs/x/captions.csv')).toBe(false);
    expect(routed('datasets/uc-merced/captions.csv', 'other-bucket')).toBe(false);
  });

  it('implements the EventBridge operators the rule may use', () => {
    const event = { source: 'aws.s3', detail: { object: { key: 'a/b.csv', size: 3 } } };
    expect(matchesEventPattern({ detail: { object: { key: [{ prefix: 'a/' }] } } }, event)).toBe(true);
    expect(matchesEventPattern({ detail: { object: { key: [{ suffix: '.png' }] } } }, event)).toBe(false);
    expect(matchesEventPattern({ detail: { object: { key: [{ wildcard: '*/b.csv' }] } } }, event)).toBe(true);
    expect(matchesEventPattern({ detail: { object: { key: [{ wildcard: 'a.b.csv' }] } } }, { detail: { object: { key: 'a/b.csv' } } })).toBe(false);
    expect(matchesEventPattern({ detail: { object: { etag: [{ exists: false }] } } }, event)).toBe(true);
    expect(matchesEventPattern({ detail: { object: { size: [3] } } }, event)).toBe(true);
    expect(matchesEventPattern({ source: [{ 'anything-but': ['aws.s3'] }] }, event)).toBe(false);
    expect(matchesEventPattern({ 'detail-type': ['Object Created'] }, event)).toBe(false);
    expect(() => matchesEventPattern({ detail: { object: { size: [{ numeric: ['>', 1] }] } } }, event)).toThrow(/not supported/);
  });
});

describe('trigger', () => {
  // The trigger looks up captions.csv and train.json, so the bucket is a loopback S3 server's.
  let s3: LocalS3 | undefined;
  beforeAll(async () => {
    s3 = await startLocalS3('data');
    await s3.store.put('datasets/rs/captions.csv', 'filename,caption\na.png,a field\n');
  });
  afterAll(async () => s3?.stop());

  const created = (key: string, version: { etag?: string; versionId?: string }) =>
    objectCreatedEvent({ bucket: 'data', key, ...version });

  // A single-part upload's ETag: the MD5 of its bytes, quoted.
  const etag = (content: string) => `"${createHash('md5').update(content).digest('hex')}"`;

  it('names one run per uploaded content: duplicates and re-uploads of the same bytes collapse, a change starts a new run', async () => {
    const sfn = fakeStepFunctions();
    const first = await trigger(created('datasets/rs/captions.csv', { versionId: 'v1', etag: etag('a') }), sfn.start);
    const again = await trigger(created('datasets/rs/captions.csv', { versionId: 'v1', etag: etag('a') }), sfn.start);
    // A versioned bucket gives a re-upload of the same file a new version id.
    const reupload = await trigger(created('datasets/rs/captions.csv', { versionId: 'v2', etag: etag('a') }), sfn.start);
    const changed = await trigger(created('datasets/rs/captions.csv', { versionId: 'v3', etag: etag('b') }), sfn.start);
    expect(first).toEqual([{ status: 'started', runId: expect.stringMatching(/^rs-[0-9a-f]{12}$/), key: 'datasets/rs/captions.csv' }]);
    expect(again).toEqual([{ ...first[0], status: 'duplicate' }]);
    expect(reupload).toEqual([{ ...first[0], status: 'duplicate' }]);
    expect(changed[0]).toMatchObject({ status: 'started' });
    expect((changed[0] as { runId: string }).runId).not.toBe((first[0] as { runId: string }).runId);
    // Each run reads the captions.csv version that started it.
    expect(sfn.started.map((s) => s.input)).toEqual([
      { bucket: 'data', key: 'datasets/rs/captions.csv', runId: (first[0] as { runId: string }).runId, versionId: 'v1' },
      { bucket: 'data', key: 'datasets/rs/captions.csv', runId: (changed[0] as { runId: string }).runId, versionId: 'v3' },
    ]);
  });

  it('ignores keys that are not captions files', async () => {
    const sfn = fakeStepFunctions();
    const [started] = await trigger(created('datasets/rs/captions.csv', { etag: etag('a') }), sfn.start);
    expect(started).toMatchObject({ status: 'started', runId: runFor('data', 'datasets/rs/captions.csv', runContent({ captions: `md5:${etag('a').slice(1, -1)}` }))!.name });
    expect(await trigger(created('datasets/rs/sub/captions.csv', { etag: etag('a') }), sfn.start)).toEqual([
      { status: 'ignored', key: 'datasets/rs/sub/captions.csv' },
    ]);
    expect(sfn.started).toHaveLength(1);
  });

  it('derives a valid execution and Batch job name from any dataset name', () => {
    const run = runFor('data', `datasets/${'ü'.repeat(100)} x/captions.csv`, 'v')!;
    expect(run.name).toMatch(/^x-[0-9a-f]{12}$/);
    expect(run.input.runId).toBe(run.name);
    const names = ['_été', '-x', 'été', '東京', '__', 'rs_v2'].map((d) => runFor('data', `datasets/${d}/captions.csv`, 'v')!.name);
    for (const name of names) expect(() => [checkExecutionName(name), checkBatchJobName(name)]).not.toThrow();
    expect(names.map((n) => n.slice(0, -13))).toEqual(['t_', 'x', 't_', 'dataset', 'dataset', 'rs_v2']);
    expect(new Set(names).size).toBe(names.length);
  });

  it('the local runner refuses the names AWS refuses', () => {
    expect(() => checkBatchJobName('_x-0123456789ab')).toThrow(expect.objectContaining({ name: 'Batch.ClientException' }));
    expect(() => checkBatchJobName('a'.repeat(129))).toThrow(/1-128/);
    expect(() => checkExecutionName('a b')).toThrow(expect.objectContaining({ name: 'InvalidName' }));
    expect(() => checkExecutionName('a'.repeat(81))).toThrow(/1-80/);
  });

  it('passes other StartExecution errors on, so EventBridge retries the event', async () => {
    const failing: StartExecution = async () => {
      throw Object.assign(new Error('throttled'), { name: 'ThrottlingException' });
    };
    await expect(trigger(created('datasets/rs/captions.csv', { etag: etag('e') }), failing)).rejects.toThrow('throttled');
  });
});

describe('local rewrite of the definition', () => {
  it('turns the Distributed Map into a Task of the same name and data flow that runs its Map Run, leaving the original intact', () => {
    const original = resolveDefinition(synthesizeTemplate('aws'), 'data') as any;
    const before = JSON.stringify(original);
    const { definition, maps } = rewriteForLocal(original);
    const local = definition as any;
    expect(JSON.stringify(original)).toBe(before);

    const map = local.States.Shard;
    expect(map).toMatchObject({ Type: 'Task', Resource: MAP_RUN_RESOURCE, Next: original.States.Shard.Next });
    expect(map.ResultPath).toBeNull();
    expect(map.Catch).toEqual(original.States.Shard.Catch);
    expect(map.ItemReader).toBeUndefined();
    const run = maps.get('Shard')!;
    expect(run.state.ItemReader).toEqual(original.States.Shard.ItemReader);
    expect(run.state.ResultWriter).toEqual(original.States.Shard.ResultWriter);
    expect(run.processor.StartAt).toBe('ShardOne');
    expect((run.processor as any).ProcessorConfig).toBeUndefined();
    // Every task gets a timeout Node can keep; the ones the template sets are left alone.
    expect(local.States.Train.TimeoutSeconds * 1000).toBeLessThan(2 ** 31);
    expect(map.TimeoutSeconds * 1000).toBeLessThan(2 ** 31);
    expect(local.States.Validate.TimeoutSeconds).toBe(original.States.Validate.TimeoutSeconds);
  });
});
