import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drainCreatedObjects, startLocalS3, type InProcessS3 } from '../../cli/local-s3.ts';
import { matchesEventPattern, objectCreatedEvent, uploadRulePattern } from '../../cdk/local/event-routing.ts';
import { synthesizeTemplate } from '../../cdk/local/synth.ts';
import { captionsKey, imageKey, trainOptionsKey } from '../../core/s3-layout.ts';
import { trigger, type ObjectCreatedEvent } from '../../lambdas/trigger/handler.ts';
import { rerunKey } from '../../lambdas/trigger/run-id.ts';
import type { StartExecution, StartResult } from '../../lambdas/trigger/start-run.ts';

let s3: InProcessS3;
beforeAll(async () => {
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  s3 = await startLocalS3('rerun-test');
});
afterAll(async () => s3?.stop());

/** Step Functions' name rule: a name used once is ExecutionAlreadyExists afterwards. */
function fakeStepFunctions() {
  const started: { name: string; input: { bucket: string; key: string; runId: string; versionId?: string } }[] = [];
  const start: StartExecution = async (name, input) => {
    if (started.some((s) => s.name === name)) throw Object.assign(new Error('exists'), { name: 'ExecutionAlreadyExists' });
    started.push({ name, input: JSON.parse(input) });
  };
  return { start, started };
}

/** A write as a user makes it (one PutObject, as `aws s3 cp` does). */
const put = (key: string, body: string) => s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));

/**
 * The events S3 sends for the writes since the last call, through the rules' pattern from the synthesized
 * template, as the local pipeline routes them: the ones no rule matches never reach the trigger.
 */
async function routedEvents(): Promise<ObjectCreatedEvent[]> {
  const pattern = uploadRulePattern(synthesizeTemplate('aws'), s3.bucket);
  const events = (await drainCreatedObjects(s3)).map((o) => objectCreatedEvent(o));
  return events.filter((e) => matchesEventPattern(pattern, e));
}

async function deliver(start: StartExecution): Promise<StartResult[]> {
  const out: StartResult[] = [];
  for (const e of await routedEvents()) out.push(...(await trigger(e, start)));
  return out;
}

const CSV = 'filename,caption\na.png,a field\n';
const runIdOf = (r: StartResult[]): string => {
  expect(r).toHaveLength(1);
  expect(r[0]!.status).not.toBe('ignored');
  return (r[0] as { runId: string }).runId;
};

describe('run ids cover what a run reads', () => {
  it('starts a new run when train.json changed and captions.csv is uploaded again, and not for the same files', async () => {
    const sfn = fakeStepFunctions();
    await put(imageKey('rs', 'a.png'), 'png-1');
    await put(trainOptionsKey('rs'), '{"epochs": 1}');
    await put(captionsKey('rs'), CSV);
    const first = await deliver(sfn.start);
    // The image and train.json uploads match no rule.
    expect(first).toEqual([{ status: 'started', runId: expect.stringMatching(/^rs-[0-9a-f]{12}$/), key: captionsKey('rs') }]);

    await put(captionsKey('rs'), CSV);
    expect(await deliver(sfn.start)).toEqual([{ ...first[0], status: 'duplicate' }]);

    await put(trainOptionsKey('rs'), '{"epochs": 2}');
    await put(captionsKey('rs'), CSV);
    const fixedOptions = runIdOf(await deliver(sfn.start));
    expect(fixedOptions).not.toBe(runIdOf(first));
    expect(sfn.started.map((s) => s.name)).toEqual([runIdOf(first), fixedOptions]);

    // train.json removed is a change too.
    await s3.store.delete(trainOptionsKey('rs'));
    await put(captionsKey('rs'), CSV);
    expect(runIdOf(await deliver(sfn.start))).not.toBe(fixedOptions);
    expect(sfn.started).toHaveLength(3);
  });

  it('re-runs on a write of datasets/<name>/rerun, once per write, from the current captions.csv', async () => {
    const sfn = fakeStepFunctions();
    await put(captionsKey('rm'), CSV);
    const upload = runIdOf(await deliver(sfn.start));

    // A fixed image is invisible to the trigger: the same captions.csv again is a duplicate...
    await put(imageKey('rm', 'a.png'), 'png-2');
    await put(captionsKey('rm'), CSV);
    expect(await deliver(sfn.start)).toMatchObject([{ status: 'duplicate', runId: upload }]);

    // ...the marker starts a run of the dataset's captions.csv.
    await put(rerunKey('rm'), 'go');
    const [markerEvent, ...more] = await routedEvents();
    expect(more).toEqual([]);
    expect(markerEvent!.detail.object.key).toBe('datasets/rm/rerun');
    const rerun = await trigger(markerEvent!, sfn.start);
    expect(rerun).toEqual([{ status: 'started', runId: expect.stringMatching(/^rm-[0-9a-f]{12}$/), key: captionsKey('rm') }]);
    expect(runIdOf(rerun)).not.toBe(upload);
    expect(sfn.started.at(-1)!.input).toEqual({ bucket: s3.bucket, key: captionsKey('rm'), runId: runIdOf(rerun) });

    // EventBridge delivers at least once: the same event again is the same run; another write is another run.
    expect(await trigger(markerEvent!, sfn.start)).toEqual([{ ...rerun[0], status: 'duplicate' }]);
    await put(rerunKey('rm'), 'go');
    const again = runIdOf(await deliver(sfn.start));
    expect(new Set([upload, runIdOf(rerun), again]).size).toBe(3);

    // In the versioned bucket the marker's version names the write and the run pins captions.csv's version.
    const versioned = (version: string): ObjectCreatedEvent => {
      const e = objectCreatedEvent({ bucket: s3.bucket, key: rerunKey('rm'), etag: '"d41d8cd98f00b204e9800998ecf8427e"', versionId: version });
      return { ...e, detail: { ...e.detail, object: { ...e.detail.object, sequencer: undefined } } };
    };
    const v1 = await trigger(versioned('v1'), sfn.start);
    expect(await trigger(versioned('v1'), sfn.start)).toEqual([{ ...v1[0], status: 'duplicate' }]);
    expect(runIdOf(await trigger(versioned('v2'), sfn.start))).not.toBe(runIdOf(v1));
  });

  it('ignores a marker without a captions.csv, and keys the rules match that name no dataset file', async () => {
    const sfn = fakeStepFunctions();
    await put(rerunKey('nothing-here'), 'x');
    await put('datasets/rm/img/rerun', 'x');
    await put('datasets/rm/img/captions.csv', CSV);
    await put('datasets/rm/rerun.txt', 'x');
    expect(await deliver(sfn.start)).toEqual([
      { status: 'ignored', key: 'datasets/nothing-here/rerun' },
      // EventBridge's wildcard `*` spans `/`, so these reach the trigger, which ignores them.
      { status: 'ignored', key: 'datasets/rm/img/rerun' },
      { status: 'ignored', key: 'datasets/rm/img/captions.csv' },
    ]);
    expect(sfn.started).toEqual([]);
  });
});

describe('routing of datasets whose names differ only in URL encoding', () => {
  it('starts `a b` for an upload of `a b` and `a+b` for one of `a+b`, with both present', async () => {
    const sfn = fakeStepFunctions();
    for (const name of ['a b', 'a+b', 'a%20b']) await put(trainOptionsKey(name), '{}');
    await drainCreatedObjects(s3);
    const results: Record<string, StartResult[]> = {};
    for (const name of ['a b', 'a+b', 'a%20b']) {
      await put(captionsKey(name), `${CSV}b.png,${name}\n`);
      const events = await routedEvents();
      // S3's EventBridge events carry the key itself, as the local routing does.
      expect(events.map((e) => e.detail.object.key)).toEqual([captionsKey(name)]);
      results[name] = await trigger(events[0]!, sfn.start);
    }
    expect(sfn.started.map((s) => s.input.key)).toEqual([captionsKey('a b'), captionsKey('a+b'), captionsKey('a%20b')]);
    expect(new Set(sfn.started.map((s) => s.name)).size).toBe(3);
    for (const name of ['a b', 'a+b', 'a%20b']) expect(results[name]).toMatchObject([{ status: 'started', key: captionsKey(name) }]);

    // A late event for `a+b` after its captions.csv is gone names no object: it is not taken for `a b` (the
    // form-decoded spelling), whose files are there.
    const late = objectCreatedEvent({ bucket: s3.bucket, key: captionsKey('a+b'), etag: '"0cc175b9c0f1b6a831c399e269772661"' });
    await s3.store.delete(captionsKey('a+b'));
    expect(await trigger(late, sfn.start)).toEqual([{ status: 'ignored', key: captionsKey('a+b') }]);
    await put(captionsKey('a+b'), `${CSV}b.png,a+b\n`);
    await drainCreatedObjects(s3);

    // Re-runs route the same way.
    for (const name of ['a b', 'a+b']) await put(rerunKey(name), 'go');
    expect((await deliver(sfn.start)).map((r) => r.key)).toEqual([captionsKey('a b'), captionsKey('a+b')]);
  });
});
