import { describe, expect, it } from 'vitest';
import type { RunSpec } from '../../core/run-spec.ts';
import { TrainInputError } from '../../core/run-errors.ts';
import { silentLogger } from '../../worker/train/log.ts';
import type { TrainOutput } from '../../worker/train/run.ts';
import { parseRunSpec, pollActivity, runTask } from '../../worker/main.ts';

/** Records the Step Functions API calls the worker makes and answers GetActivityTask from a queue. */
function fakeSfn(tasks: { taskToken?: string; input?: string }[] = []) {
  const calls: { name: string; input: Record<string, unknown> }[] = [];
  return {
    calls,
    names: () => calls.map((c) => c.name),
    async send(command: { constructor: { name: string }; input: unknown }): Promise<any> {
      const name = command.constructor.name.replace(/Command$/, '');
      calls.push({ name, input: command.input as Record<string, unknown> });
      if (name === 'GetActivityTask') return tasks.shift() ?? {};
      return {};
    },
  };
}

const spec: RunSpec = { runId: 'ds-abc', bucket: 'bucket', dataset: 'ds', options: {} };
const output = (s: RunSpec): TrainOutput => ({
  runId: s.runId,
  steps: 3,
  finalPrefix: `runs/${s.runId}/final/`,
  sha256: 'ab'.repeat(32),
  before: { mean_recall: 10 } as TrainOutput['before'],
  after: { mean_recall: 30 } as TrainOutput['after'],
});

describe('Step Functions worker', () => {
  it('heartbeats while training, then sends the Train output as task success', async () => {
    const sfn = fakeSfn();
    const train = async (s: RunSpec) => {
      await new Promise((r) => setTimeout(r, 60));
      return output(s);
    };
    const out = await runTask(spec, 'token-1', { sfn, train, log: silentLogger, heartbeatMs: 10 });
    expect(out?.steps).toBe(3);
    const names = sfn.names();
    expect(names.filter((n) => n === 'SendTaskHeartbeat').length).toBeGreaterThanOrEqual(2);
    expect(names.at(-1)).toBe('SendTaskSuccess');
    const success = sfn.calls.at(-1)!.input;
    expect(success.taskToken).toBe('token-1');
    expect(JSON.parse(success.output as string)).toEqual(output(spec));
    // No heartbeat after the task ended.
    await new Promise((r) => setTimeout(r, 30));
    expect(sfn.names().at(-1)).toBe('SendTaskSuccess');
  });

  it('reports a failed run with the error name and cause', async () => {
    const sfn = fakeSfn();
    const train = async (): Promise<TrainOutput> => {
      throw new TrainInputError('s3://b/runs/x/shards: no .rsshard files');
    };
    expect(await runTask(spec, 't', { sfn, train, log: silentLogger, heartbeatMs: 1000 })).toBeUndefined();
    const failure = sfn.calls.at(-1)!;
    expect(failure.name).toBe('SendTaskFailure');
    expect(failure.input.error).toBe('TrainInputError');
    expect(failure.input.cause).toContain('no .rsshard files');
  });

  it('as an activity worker, long-polls, skips empty polls, rejects bad input and runs good tasks', async () => {
    const sfn = fakeSfn([{}, { taskToken: 'bad', input: '{"runId": 5}' }, { taskToken: 'good', input: JSON.stringify({ runSpec: spec }) }]);
    const seen: string[] = [];
    const train = async (s: RunSpec) => {
      seen.push(s.runId);
      return output(s);
    };
    const n = await pollActivity({ activityArn: 'arn:aws:states:us-east-1:1:activity:train', workerName: 'w', maxTasks: 2 }, { sfn, train, log: silentLogger });
    expect(n).toBe(2);
    expect(seen).toEqual(['ds-abc']);
    expect(sfn.names()).toEqual(['GetActivityTask', 'GetActivityTask', 'SendTaskFailure', 'GetActivityTask', 'SendTaskSuccess']);
    expect(sfn.calls[2]!.input).toMatchObject({ taskToken: 'bad', error: 'InvalidRunSpec' });
    expect(sfn.calls[0]!.input).toEqual({ activityArn: 'arn:aws:states:us-east-1:1:activity:train', workerName: 'w' });
  });

  it('parses RUN_SPEC strictly, naming the bad field', () => {
    expect(parseRunSpec(JSON.stringify(spec), 'RUN_SPEC')).toEqual(spec);
    expect(() => parseRunSpec('{', 'RUN_SPEC')).toThrow(/RUN_SPEC: not JSON/);
    expect(() => parseRunSpec(JSON.stringify({ ...spec, runId: 'a b' }), 'RUN_SPEC')).toThrow(/RUN_SPEC: invalid run spec at runId/);
  });
});
