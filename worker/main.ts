/**
 * The worker container's entry point. One process serves every way Step Functions can hand it a run:
 *  - AWS Batch (`.sync`): the run spec in env RUN_SPEC; success is the exit code.
 *  - a task token (`.waitForTaskToken`): RUN_SPEC plus TASK_TOKEN; heartbeats while training, then
 *    SendTaskSuccess with the Train output or SendTaskFailure.
 *  - an activity worker (LocalStack, or a long-lived GPU box): `--activity-arn ARN` or env ACTIVITY_ARN;
 *    long-polls GetActivityTask and runs each task as above.
 */
import { hostname } from 'node:os';
import { pathToFileURL } from 'node:url';
import {
  GetActivityTaskCommand,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  SFNClient,
} from '@aws-sdk/client-sfn';
import { ATTEMPT_DEADLINE_EXIT_CODE, ATTEMPT_TIMEOUT_ENV, RunSpecSchema, type RunSpec } from '../core/run-spec.ts';
import { AttemptDeadline, TrainInputError } from '../core/run-errors.ts';
import { jsonLinesTo, type Logger } from './train/log.ts';
import { runTraining, type TrainOutput } from './train/run.ts';
import { issueLine } from '../core/schema-issue.ts';

/** Step Functions' limit on a failure cause. */
const MAX_CAUSE = 32_768;
export const HEARTBEAT_MS = 60_000;

export interface WorkerDeps {
  sfn: Pick<SFNClient, 'send'>;
  train: (spec: RunSpec) => Promise<TrainOutput>;
  log: Logger;
  heartbeatMs: number;
}

function defaults(over: Partial<WorkerDeps>): WorkerDeps {
  return {
    sfn: over.sfn ?? new SFNClient({}),
    train: over.train ?? ((spec) => runTraining(spec)),
    log: over.log ?? jsonLinesTo(process.stderr),
    heartbeatMs: over.heartbeatMs ?? HEARTBEAT_MS,
  };
}

/** A run spec from a task input: the spec itself, or `{ runSpec: spec }` as the workflow wraps it. */
export function parseRunSpec(input: string, source: string): RunSpec {
  let json: unknown;
  try {
    json = JSON.parse(input);
  } catch (e) {
    throw new TrainInputError(`${source}: not JSON (${(e as Error).message})`);
  }
  const candidate = json && typeof json === 'object' && 'runSpec' in json ? (json as { runSpec: unknown }).runSpec : json;
  const parsed = RunSpecSchema.safeParse(candidate);
  if (!parsed.success) {
    throw new TrainInputError(`${source}: invalid run spec at ${issueLine(parsed.error)}`);
  }
  return parsed.data;
}

/** Trains one run for a task token: heartbeats meanwhile, then reports success or failure. Never throws for a failed run. */
export async function runTask(spec: RunSpec, taskToken: string, over: Partial<WorkerDeps> = {}): Promise<TrainOutput | undefined> {
  const d = defaults(over);
  const timer = setInterval(() => {
    d.sfn.send(new SendTaskHeartbeatCommand({ taskToken })).then(
      () => d.log({ event: 'heartbeat', runId: spec.runId }),
      (e: unknown) => d.log({ event: 'heartbeat-failed', runId: spec.runId, error: String(e) }),
    );
  }, d.heartbeatMs);
  try {
    const output = await d.train(spec);
    await d.sfn.send(new SendTaskSuccessCommand({ taskToken, output: JSON.stringify(output) }));
    d.log({ event: 'task-succeeded', runId: spec.runId });
    return output;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    d.log({ event: 'task-failed', runId: spec.runId, error: err.name, cause: err.message });
    await d.sfn.send(new SendTaskFailureCommand({ taskToken, error: err.name, cause: (err.stack ?? err.message).slice(0, MAX_CAUSE) }));
    return undefined;
  } finally {
    clearInterval(timer);
  }
}

export interface ActivityOptions {
  activityArn: string;
  workerName?: string;
  /** Stop after this many tasks (tests, one-shot workers); forever when absent. */
  maxTasks?: number;
  signal?: AbortSignal;
}

/** The activity worker loop: GetActivityTask long-polls (up to 60 s each) until a task arrives. */
export async function pollActivity(opts: ActivityOptions, over: Partial<WorkerDeps> = {}): Promise<number> {
  const d = defaults(over);
  const workerName = opts.workerName ?? `rsclip-${hostname()}-${process.pid}`;
  let done = 0;
  while (!opts.signal?.aborted && (opts.maxTasks === undefined || done < opts.maxTasks)) {
    const task = await d.sfn.send(new GetActivityTaskCommand({ activityArn: opts.activityArn, workerName }), { abortSignal: opts.signal });
    if (!task.taskToken) continue;
    done++;
    let spec: RunSpec;
    try {
      spec = parseRunSpec(task.input ?? '', 'activity task input');
    } catch (e) {
      await d.sfn.send(new SendTaskFailureCommand({ taskToken: task.taskToken, error: 'InvalidRunSpec', cause: (e as Error).message.slice(0, MAX_CAUSE) }));
      continue;
    }
    d.log({ event: 'task', runId: spec.runId });
    await runTask(spec, task.taskToken, d);
  }
  return done;
}

/**
 * When a Batch attempt must stop: ATTEMPT_TIMEOUT_SECONDS (the job definition's attempt timeout) after the process
 * started, less a margin for the checkpoint upload and shutdown (10 % of it, at least 5 minutes, at most 30).
 */
export function attemptDeadline(env: NodeJS.ProcessEnv, startedAt = Date.now() - performance.now()): number | undefined {
  const raw = env[ATTEMPT_TIMEOUT_ENV];
  if (raw === undefined || raw === '') return undefined;
  const seconds = Number(raw);
  if (!(Number.isFinite(seconds) && seconds > 0)) throw new TrainInputError(`${ATTEMPT_TIMEOUT_ENV} must be a positive number of seconds, got '${raw}'`);
  const margin = Math.min(1800, Math.max(300, seconds * 0.1));
  return startedAt + Math.max(0, seconds - margin) * 1000;
}

/** The container's behaviour from its environment; resolves to the exit code. */
export async function main(env: NodeJS.ProcessEnv = process.env, activityArn = env.ACTIVITY_ARN): Promise<number> {
  if (env.RUN_SPEC) {
    const spec = parseRunSpec(env.RUN_SPEC, 'RUN_SPEC');
    if (env.TASK_TOKEN) return (await runTask(spec, env.TASK_TOKEN)) ? 0 : 1;
    try {
      console.log(JSON.stringify(await runTraining(spec, { deadline: attemptDeadline(env) })));
    } catch (e) {
      if (!(e instanceof AttemptDeadline)) throw e;
      console.error(e.message);
      return ATTEMPT_DEADLINE_EXIT_CODE;
    }
    return 0;
  }
  if (activityArn) {
    const stop = new AbortController();
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => stop.abort());
    await pollActivity({ activityArn, signal: stop.signal }).catch((e: unknown) => {
      if (!stop.signal.aborted) throw e;
    });
    return 0;
  }
  throw new TrainInputError('worker: set RUN_SPEC (one run, optionally with TASK_TOKEN) or ACTIVITY_ARN / --activity-arn (activity worker)');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : e);
      process.exitCode = 1;
    },
  );
}
