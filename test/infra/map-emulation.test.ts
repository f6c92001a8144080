import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalS3, type InProcessS3 } from '../../cli/local-s3.ts';
import { resolveDefinition } from '../../cdk/local/asl.ts';
import { serviceGuards, withinLambdaLimits } from '../../cdk/local/aws-rules.ts';
import { runWorkflowLocally, type Intercept, type WorkflowEvent } from '../../cdk/local/run-workflow.ts';
import { synthesizeTemplate, type Template } from '../../cdk/local/synth.ts';
import { STATE } from '../../cdk/workflow.ts';

let s3: InProcessS3;
type Asl = { StartAt: string; States: Record<string, any> };
let deployed: Asl;
/** The Shard function's ARN in the template: a processor Task the runner has a handler (ShardOne) and limits for. */
let shardFunction: string;

beforeAll(async () => {
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  s3 = await startLocalS3('map-emulation-test');
  deployed = resolveDefinition(synthesizeTemplate('aws'), s3.bucket) as unknown as Asl;
  shardFunction = deployed.States[STATE.shard].ItemProcessor.States[STATE.shardOne].Resource;
});
afterAll(async () => {
  await s3?.stop();
});

const decode = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes));

/** A machine of one Distributed Map over the JSON array at the run's `key`, each child one ShardOne Task. */
function mapMachine(map: Record<string, unknown>, before: Record<string, any> = {}): Asl {
  const first = Object.keys(before)[0];
  return {
    StartAt: first ?? STATE.shard,
    States: {
      ...before,
      [STATE.shard]: {
        Type: 'Map',
        ItemProcessor: {
          ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' },
          StartAt: STATE.shardOne,
          States: { [STATE.shardOne]: { Type: 'Task', Resource: shardFunction, End: true } },
        },
        ItemReader: { Resource: 'arn:aws:states:::s3:getObject', ReaderConfig: { InputType: 'JSON' }, Parameters: { Bucket: s3.bucket, 'Key.$': '$.key' } },
        ResultPath: '$.map',
        End: true,
        ...map,
      },
    },
  };
}

async function runMap(name: string, items: unknown[], definition: Asl, intercept: Intercept, onEvent?: (e: WorkflowEvent) => void) {
  const key = `tests/${name}.json`;
  await s3.store.put(key, JSON.stringify(items));
  return runWorkflowLocally({ bucket: s3.bucket, key, runId: name, train: async () => 'unused', intercept, definition: definition as never, onEvent });
}

/** ShardOne fails for items whose `fail` is set, and answers with what it got otherwise. */
const shardOne: Intercept = async (state, input, next) => {
  if (state !== STATE.shardOne) return next(input);
  if ((input as { fail?: boolean }).fail) throw Object.assign(new Error(`item ${(input as { n: number }).n} broke`), { name: 'ItemBroke' });
  return { got: input };
};

describe('Distributed Map emulation', () => {
  it('runs one child per ItemBatcher batch, under MaxItemsPerBatch, MaxInputBytesPerBatch and the 256 KiB child input', async () => {
    const events: WorkflowEvent[] = [];
    const items = Array.from({ length: 7 }, (_, n) => ({ n }));
    const byCount = await runMap(
      'batches',
      items,
      mapMachine({ ItemBatcher: { MaxItemsPerBatch: 3, BatchInput: { 'runId.$': '$.runId' } } }),
      shardOne,
      (e) => events.push(e),
    );
    expect(byCount.error).toBeUndefined();
    const batches = (byCount.output as { map: { got: { Items: unknown[]; BatchInput: unknown } }[] }).map.map((r) => r.got);
    expect(batches.map((b) => b.Items)).toEqual([items.slice(0, 3), items.slice(3, 6), items.slice(6)]);
    expect(batches.every((b) => (b.BatchInput as { runId: string }).runId === 'batches')).toBe(true);
    expect(events.find((e) => e.type === 'MapRunStarted')).toMatchObject({ state: { name: STATE.shard }, items: 7, executions: 3 });
    expect(events.filter((e) => e.type === 'MapIterationSucceeded').map((e) => (e as { index: number }).index).sort()).toEqual([0, 1, 2]);
    expect(events.filter((e) => e.type === 'StateEntered' && e.state.name === STATE.shardOne)).toHaveLength(3);
    expect(events.find((e) => e.type === 'MapRunSucceeded')).toBeDefined();

    // {"Items":[...]} is 11 bytes and each {"n":k} 7 more, a comma between: three items fit in 35 bytes, not four.
    const byBytes = await runMap('batch-bytes', items, mapMachine({ ItemBatcher: { MaxInputBytesPerBatch: 35 } }), shardOne);
    const sizes = (byBytes.output as { map: { got: { Items: unknown[] } }[] }).map.map((r) => r.got.Items.length);
    expect(sizes).toEqual([3, 3, 1]);

    // Without a byte limit a batch still stops short of 256 KiB: two 100 KiB items fit, a third would not.
    const large = Array.from({ length: 5 }, (_, n) => ({ n, pad: 'x'.repeat(100 * 1024) }));
    const batchSizes: number[] = [];
    const capped = await runMap('batch-cap', large, mapMachine({ ItemBatcher: { MaxItemsPerBatch: 10 }, ResultPath: null }), async (state, input, next) => {
      if (state !== STATE.shardOne) return next(input);
      batchSizes.push((input as { Items: unknown[] }).Items.length);
      return {};
    });
    expect(capped.error).toBeUndefined();
    expect(batchSizes.sort()).toEqual([1, 2, 2]);
  });

  it('lets failures within ToleratedFailurePercentage through, and past it fails with States.ExceedToleratedFailureThreshold for the Catch', async () => {
    const items = Array.from({ length: 10 }, (_, n) => ({ n, fail: n % 5 === 0 })); // 2 of 10 fail: 20 %
    const tolerant = mapMachine(
      { ToleratedFailurePercentagePath: '$.tolerated' },
      { Setup: { Type: 'Pass', Result: 20, ResultPath: '$.tolerated', Next: STATE.shard } },
    );
    const within = await runMap('tolerated', items, tolerant, shardOne);
    expect(within.error).toBeUndefined();
    expect(within.status).toBe('SUCCEEDED');
    const results = (within.output as { map: Record<string, unknown>[] }).map;
    expect(results).toHaveLength(10);
    // A failed child is in the results whole, as AWS returns it; a succeeded one as its output.
    expect(results[0]).toMatchObject({ Status: 'FAILED', Error: 'ItemBroke', Cause: 'item 0 broke', Input: JSON.stringify(items[0]) });
    expect(results[1]).toEqual({ got: items[1] });

    const strict = mapMachine({
      ToleratedFailurePercentage: 10,
      Catch: [{ ErrorEquals: ['States.ExceedToleratedFailureThreshold'], ResultPath: '$.error', Next: 'Caught' }],
    });
    strict.States.Caught = { Type: 'Pass', End: true };
    const past = await runMap('intolerable', items, strict, shardOne);
    expect(past.status).toBe('SUCCEEDED');
    const { error } = past.output as { error: { Error: string; Cause: string } };
    expect(error.Error).toBe('States.ExceedToleratedFailureThreshold');
    expect(error.Cause).toMatch(/^The specified tolerated failure threshold was exceeded: [0-9]+ of 10 items failed .*first failure: ItemBroke: item [05] broke$/);

    const byCount = await runMap('count', items, mapMachine({ ToleratedFailureCount: 1 }), shardOne);
    expect(byCount.error?.name).toBe('States.ExceedToleratedFailureThreshold');
  });

  it('writes the Map Run results to S3 as AWS does (manifest.json, SUCCEEDED_0.json, FAILED_0.json), the state getting only where they are', async () => {
    const items = Array.from({ length: 4 }, (_, n) => ({ n, fail: n === 2 }));
    const definition = mapMachine(
      {
        ToleratedFailureCount: 1,
        ResultWriter: { Resource: 'arn:aws:states:::s3:putObject', Parameters: { Bucket: s3.bucket, 'Prefix.$': '$.prefix' } },
      },
      { Setup: { Type: 'Pass', Result: 'runs/writer/shard-results', ResultPath: '$.prefix', Next: STATE.shard } },
    );
    const result = await runMap('writer', items, definition, shardOne);
    expect(result.error).toBeUndefined();
    const { map } = result.output as { map: { MapRunArn: string; ResultWriterDetails: { Bucket: string; Key: string } } };
    expect(Object.keys(map).sort()).toEqual(['MapRunArn', 'ResultWriterDetails']);
    const mapRunId = map.MapRunArn.split(':').at(-1)!;
    expect(map.MapRunArn).toBe(`arn:aws:states:us-east-1:000000000000:mapRun:local/Shard:${mapRunId}`);
    expect(map.ResultWriterDetails).toEqual({ Bucket: s3.bucket, Key: `runs/writer/shard-results/${mapRunId}/manifest.json` });

    const manifest = decode(await s3.store.get(map.ResultWriterDetails.Key));
    const prefix = `runs/writer/shard-results/${mapRunId}`;
    expect(manifest).toEqual({
      DestinationBucket: s3.bucket,
      MapRunArn: map.MapRunArn,
      ResultFiles: {
        FAILED: [{ Key: `${prefix}/FAILED_0.json`, Size: expect.any(Number) }],
        PENDING: [],
        SUCCEEDED: [{ Key: `${prefix}/SUCCEEDED_0.json`, Size: expect.any(Number) }],
      },
    });
    const succeededFile = await s3.store.get(`${prefix}/SUCCEEDED_0.json`);
    expect(manifest.ResultFiles.SUCCEEDED[0].Size).toBe(succeededFile.byteLength);
    const succeeded = decode(succeededFile) as Record<string, any>[];
    expect(succeeded.map((e) => JSON.parse(e.Input))).toEqual([items[0], items[1], items[3]]);
    for (const entry of succeeded) {
      expect(entry).toMatchObject({
        ExecutionArn: `arn:aws:states:us-east-1:000000000000:execution:local/Shard:${entry.Name}`,
        InputDetails: { Included: true },
        OutputDetails: { Included: true },
        RedriveCount: 0,
        RedriveStatus: 'NOT_REDRIVABLE',
        StateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:local/Shard',
        Status: 'SUCCEEDED',
      });
      expect(JSON.parse(entry.Output)).toEqual({ got: JSON.parse(entry.Input) });
      expect(Date.parse(entry.StopDate)).toBeGreaterThanOrEqual(Date.parse(entry.StartDate));
    }
    const failed = decode(await s3.store.get(`${prefix}/FAILED_0.json`)) as Record<string, any>[];
    expect(failed).toEqual([expect.objectContaining({ Status: 'FAILED', Error: 'ItemBroke', Cause: 'item 2 broke', Input: JSON.stringify(items[2]) })]);
    expect(failed[0]!.Output).toBeUndefined();
  });
});

describe('service quotas the local runner enforces', () => {
  /** The deployed machine up to Train, without a dataset: Validate answers for the handler, the plan has no items. */
  const fakeIngest = (validated: Record<string, unknown>): Intercept => async (state, input, next) => {
    if (state === STATE.validate) return { ...(input as object), dataset: 'quota', shards: 0, planKey: 'p', shardResultsPrefix: 'runs/quota/shard-results', ...validated };
    if (state === `${STATE.shard}__ReadItems`) return [];
    if (state === STATE.collect) return {};
    return next(input);
  };

  it("fails a Lambda task whose response is over Lambda's 6 MB, and one over 256 KiB as States.DataLimitExceeded", async () => {
    const response = (bytes: number) => ({ blob: 'x'.repeat(bytes) });
    const run = (bytes: number) =>
      runWorkflowLocally({
        bucket: s3.bucket,
        key: 'datasets/quota/captions.csv',
        runId: `quota-${bytes}`,
        train: async () => 'unused',
        intercept: async (state, input, next) => (state === STATE.validate ? response(bytes) : next(input)),
      });
    const huge = await run(7 * 2 ** 20);
    expect(huge.status).toBe('FAILED');
    expect(huge.error?.name).toBe('Function.ResponseSizeTooLarge');
    expect(huge.error?.cause).toContain(
      `'s response payload is ${JSON.stringify(response(7 * 2 ** 20)).length} bytes, over Lambda's 6 MB quota on synchronous invocations (6291456 bytes)`,
    );
    expect(huge.notifications.map((n) => n.state)).toEqual([STATE.notifyFailure]);

    const large = await run(300 * 1024);
    const bytes = JSON.stringify(response(300 * 1024)).length;
    expect(large.error).toEqual({ name: 'States.DataLimitExceeded', cause: `state Validate: result of ${bytes} bytes is over Step Functions' limit of 262144` });
  });

  it('fails the Batch job whose SubmitJob container overrides are over the 8192 characters ECS allows', async () => {
    let trained = false;
    const result = await runWorkflowLocally({
      bucket: s3.bucket,
      key: 'datasets/quota/captions.csv',
      runId: 'quota-overrides',
      train: async () => {
        trained = true;
        return 'trained';
      },
      intercept: fakeIngest({ options: { freeze: Array.from({ length: 220 }, () => 'x'.repeat(38)) } }),
    });
    expect(result.status).toBe('FAILED');
    expect(result.error?.name).toBe('States.TaskFailed');
    expect(result.error?.cause).toMatch(/^Batch job quota-overrides FAILED: Container Overrides length must be at most 8192 \(the SubmitJob's ContainerOverrides are 9[0-9]{3} characters/);
    expect(trained).toBe(false);

    const small = await runWorkflowLocally({
      bucket: s3.bucket,
      key: 'datasets/quota/captions.csv',
      runId: 'quota-overrides-ok',
      train: async () => 'trained',
      intercept: async (state, input, next) => (state === STATE.publish ? { model: 'm', sha256: 's' } : fakeIngest({ options: {} })(state, input, next)),
    });
    expect(small.error).toBeUndefined();
    expect(small.train).toBe('trained');
  });

  it("fails a Lambda invocation past its function's Timeout (Sandbox.Timedout) or MemorySize (Runtime.OutOfMemory), as the template configures them", async () => {
    const template: Template = { Resources: { Fn: { Type: 'AWS::Lambda::Function', Properties: { MemorySize: 64, Timeout: 0.05 } } } };
    const definition = { States: { Call: { Type: 'Task', Resource: 'arn:aws:lambda:us-east-1:000000000000:function:Fn', End: true } } };
    const guard = serviceGuards(definition, template).get('Call')!;
    const slow = () => new Promise((done) => setTimeout(() => done('late'), 300));
    await expect(guard({}, slow)).rejects.toMatchObject({ name: 'Sandbox.Timedout', message: 'Task timed out after 0.05 seconds (the Timeout of Fn)' });
    await expect(guard({}, async () => 'quick')).resolves.toBe('quick');

    // 256 MB written (so resident) and held until the call returns: over 64 MB, however the growth is shared out.
    const hungry = async () => Buffer.alloc(256 * 2 ** 20, 1);
    await expect(withinLambdaLimits({ functionName: 'Fn', memoryMb: 64, timeoutSeconds: 5 }, hungry)).rejects.toMatchObject({ name: 'Runtime.OutOfMemory' });
    await expect(withinLambdaLimits({ functionName: 'Fn', memoryMb: 1024, timeoutSeconds: 5 }, hungry)).resolves.toHaveLength(256 * 2 ** 20);
    expect(() => serviceGuards({ States: { Call: { ...definition.States.Call, Resource: 'arn:aws:lambda:us-east-1:000000000000:function:Gone' } } }, template)).toThrow(
      /not a Lambda function of the template/,
    );

    // The lambda:invoke form names the function in its Parameters and answers with the response in Payload.
    const invoke = serviceGuards({ States: { Call: { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', End: true } } }, template).get('Call')!;
    const params = { FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:Fn', Payload: {} };
    await expect(invoke(params, slow)).rejects.toMatchObject({ name: 'Sandbox.Timedout' });
    await expect(invoke(params, async () => ({ StatusCode: 200, Payload: 'x'.repeat(7 * 2 ** 20) }))).rejects.toMatchObject({ name: 'Function.ResponseSizeTooLarge' });
  });
});
