import './promise-with-resolvers.ts';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ExecutionAbortedError, ExecutionError, StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { RunSpecSchema, type RunSpec } from '../../core/run-spec.ts';
import { handlerS3Client, makeS3Client } from '../../core/s3-client.ts';
import { trigger } from '../../lambdas/trigger/handler.ts';
import { INIT_SOURCES_ENV } from '../../lambdas/validate/init-sources.ts';
import { ANY_INIT_SOURCE } from '../../core/dataset/validate.ts';
import { runFor } from '../../lambdas/trigger/run-id.ts';
import { STATE_MACHINE_ARN_ENV as TRIGGER_ENV } from '../../lambdas/trigger/start-run.ts';
import { grantHandler } from '../../lambdas/run-access/grant.ts';
import { revokeHandler } from '../../lambdas/run-access/revoke.ts';
import { S3Store, type ObjectStore } from '../../core/store.ts';
import type { StartResult } from '../../lambdas/trigger/start-run.ts';
import { STATE } from '../workflow.ts';
import { accountOfTemplate, templatePrincipals } from './account.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION, resolveDefinition } from './asl.ts';
import { enforceActing, enforceOn, type Principal } from './iam-policy.ts';
import { matchesEventPattern, objectCreatedEvent, uploadRulePattern, type S3Put } from './event-routing.ts';
import { checkExecutionName, payloadWatch, serviceGuards, type ServiceGuard } from './aws-rules.ts';
import { mapRun, type Json, type MapRunEnv, type WorkflowEvent } from './map-run.ts';
import { READ_ITEMS, rewriteForLocal } from './rewrite.ts';
import { synthesizeTemplate, type Template } from './synth.ts';

export type { WorkflowEvent } from './map-run.ts';

/**
 * Wraps a Task, and a Distributed Map's item read (as `<Map>__ReadItems`): call `next` to run the real handler
 * (or don't, to inject a failure).
 */
export type Intercept = (state: string, input: unknown, next: (input: unknown) => Promise<unknown>) => Promise<unknown>;

export interface LocalWorkflowOptions<T> {
  /** S3 API the handlers, the item reader and the result writer use (sets AWS_ENDPOINT_URL_S3 for this process). */
  s3Endpoint?: string;
  /**
   * The Train task: receives the RunSpec the Batch job would get in RUN_SPEC, and the S3 access of the job's role
   * (the run's own, as GrantRunAccess made it): a worker given `access.store` is refused what AWS would refuse it.
   */
  train: (spec: RunSpec, access: JobAccess) => Promise<T>;
  intercept?: Intercept;
  /** Milliseconds between retries per state; 0 for every state by default (retries still happen). */
  retryIntervalOverrides?: Record<string, number | number[]>;
  onEvent?: (event: WorkflowEvent) => void;
}

export interface LocalRunInput {
  bucket: string;
  /** Resolved ASL to run instead of the synthesized `aws` stage's (for tests of other shapes). */
  definition?: StateMachineDefinition;
  /** datasets/<name>/captions.csv */
  key: string;
  /** Defaults to what the trigger derives from the object's current version. */
  runId?: string;
}

/** S3 as the Batch job's role reaches it. */
export interface JobAccess {
  principal: Principal;
  /** The run's bucket, every call checked against `principal`. */
  store: ObjectStore;
}

export interface Notification {
  state: string;
  subject?: string;
  message: unknown;
}

export interface WorkflowResult<T> {
  runId: string;
  status: 'SUCCEEDED' | 'FAILED';
  /** The execution's output (Publish's models/<dataset>/latest.json) when it succeeded. */
  output?: unknown;
  /** The Fail state's error and cause. */
  error?: { name: string; cause: string };
  /** What `train` returned, when it ran. */
  train?: T;
  notifications: Notification[];
  /** The run roles and run job definitions that still exist when the execution has ended: none, unless revoking failed. */
  runAccessLeft: string[];
}

type Handler = (input: unknown) => Promise<unknown>;

async function lambdaHandler(name: 'validate' | 'shard' | 'collect' | 'publish'): Promise<Handler> {
  const mod = (await import(`../../lambdas/${name}/handler.ts`)) as { handler: Handler };
  return (input) => mod.handler(input);
}

/** The environment the deployed handlers get from the template, as it applies here. */
function useEndpoint(s3Endpoint: string | undefined): void {
  // Validate checks train.json's `init` against what the Batch job role may read; locally the worker is this
  // process, reading the user's own files (`rsclip run --model ./x.pt`), so any init passes (docs/DEPLOY.md).
  process.env[INIT_SOURCES_ENV] ??= JSON.stringify([ANY_INIT_SOURCE]);
  if (s3Endpoint) process.env.AWS_ENDPOINT_URL_S3 = s3Endpoint;
  process.env.AWS_REGION ??= LOCAL_REGION;
  // A loopback S3 server accepts any credentials; the SDK still wants some.
  if (s3Endpoint && !process.env.AWS_ACCESS_KEY_ID) {
    process.env.AWS_ACCESS_KEY_ID = 'local';
    process.env.AWS_SECRET_ACCESS_KEY = 'local';
  }
}

/** What the trigger names runs after: the object's versionId, else its ETag. */
async function currentVersion(bucket: string, key: string): Promise<{ versionId?: string; etag: string }> {
  const head = await makeS3Client().send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  if (!head.ETag) throw new Error(`s3://${bucket}/${key} has no ETag`);
  return { versionId: head.VersionId, etag: head.ETag.replace(/"/g, '') };
}

/** The Distributed Map's ItemReader and ResultWriter, which use the state machine's role. */
function mapObjects(s3: S3Client) {
  return {
    async readJson(params: unknown): Promise<unknown> {
      const { Bucket, Key } = params as { Bucket: string; Key: string };
      const res = await s3.send(new GetObjectCommand({ Bucket, Key }));
      return JSON.parse(await res.Body!.transformToString()) as unknown;
    },
    async putJson(Bucket: string, Key: string, Body: string): Promise<void> {
      await s3.send(new PutObjectCommand({ Bucket, Key, Body, ContentType: 'application/json' }));
    },
  };
}

type Resource = Template['Resources'][string];

/** A client of the role (in `principals`) of the one resource of `template` that `which` picks, checked as IAM would check it. */
function clientOf(template: Template, principals: ReadonlyMap<string, Principal>, which: (r: Resource) => boolean): S3Client {
  const found = Object.entries(template.Resources).find(([, r]) => which(r));
  const principal = found && principals.get(found[0]);
  if (!principal) throw new Error('the template has no such function or state machine with a role');
  return enforceOn(makeS3Client(), principal);
}

async function defaultRunId(bucket: string, key: string): Promise<string | undefined> {
  const { versionId, etag } = await currentVersion(bucket, key);
  return runFor(bucket, key, versionId ?? etag)?.input.runId;
}

/** The RunSpec out of the Batch SubmitJob parameters, validated as the worker validates RUN_SPEC. */
function runSpecOfSubmitJob(params: unknown): RunSpec {
  const env = (params as { ContainerOverrides?: { Environment?: { Name: string; Value: string }[] } }).ContainerOverrides
    ?.Environment;
  const value = env?.find((e) => e.Name === 'RUN_SPEC')?.Value;
  if (value === undefined) throw new Error('Train: SubmitJob parameters carry no RUN_SPEC');
  return RunSpecSchema.parse(JSON.parse(value));
}

/**
 * Runs the deployed state machine in-process: the `aws` stage's template is synthesized (no bundling), its
 * definition resolved to plain ASL and rewritten for aws-local-stepfunctions (each Distributed Map becomes a Task
 * that emulates its Map Run, see map-run.ts), then executed with the real Validate, Shard, Collect and Publish
 * handlers, `train` as the Batch job and a recorder for SNS, under the quotas of aws-rules.ts. A failed execution
 * resolves with status FAILED and the Fail state's error; anything else (a bug, an unreachable S3) rejects.
 */
export async function runWorkflowLocally<T>(run: LocalRunInput & LocalWorkflowOptions<T>): Promise<WorkflowResult<T>> {
  useEndpoint(run.s3Endpoint);
  const runId = run.runId ?? (await defaultRunId(run.bucket, run.key));
  if (!runId) throw new Error(`${run.key} is not a dataset's captions.csv (datasets/<name>/captions.csv)`);
  checkExecutionName(runId);

  const template = synthesizeTemplate('aws');
  const deployed = run.definition ?? resolveDefinition(template, run.bucket);
  const { definition, maps } = rewriteForLocal(deployed);
  const notifications: Notification[] = [];
  let trained: { value: T } | undefined;
  const access = accountOfTemplate(template, run.bucket);
  const config = access.config;
  const runAccessHandlers: Record<string, Handler> = config
    ? {
        [STATE.grantRunAccess]: grantHandler(access.account, () => config),
        [STATE.revokeRunAccess]: revokeHandler(access.account, () => config),
        [STATE.revokeAfterFailure]: revokeHandler(access.account, () => config),
      }
    : {};
  const [validate, shard, collect, publish] = await Promise.all(
    [lambdaHandler('validate'), lambdaHandler('shard'), lambdaHandler('collect'), lambdaHandler('publish')],
  );
  const notify = (state: string): Handler => async (params) => {
    const { Subject, Message } = params as { Subject?: string; Message: unknown };
    notifications.push({ state, subject: Subject, message: Message });
    return { MessageId: `local-${notifications.length}` };
  };
  const handlers: Record<string, Handler> = {
    [STATE.validate]: validate,
    [STATE.shardOne]: shard,
    [STATE.collect]: collect,
    ...runAccessHandlers,
    [STATE.train]: async (params) => {
      const spec = runSpecOfSubmitJob(params);
      const principal = access.account.jobPrincipal(String((params as { JobDefinition?: unknown }).JobDefinition));
      const value = await run.train(spec, { principal, store: new S3Store(spec.bucket, '', enforceOn(makeS3Client(), principal)) });
      trained = { value };
      return { JobId: `local-${runId}`, JobName: runId, Status: 'SUCCEEDED' };
    },
    [STATE.publish]: publish,
    [STATE.notifySuccess]: notify(STATE.notifySuccess),
    [STATE.notifyFailure]: notify(STATE.notifyFailure),
  };
  const intercept = run.intercept;
  const intercepted = (state: string, h: Handler): Handler => (input) => (intercept ? intercept(state, input, h) : h(input));
  // Every S3 call a handler makes is checked against its function's role, and the Map's against the state machine's.
  enforceActing(handlerS3Client());
  const principals = templatePrincipals(template, run.bucket);
  const guards = serviceGuards(deployed, template, principals);
  // A definition of another shape (run.definition, for tests) has no role of its own in the template.
  const mapS3 = mapObjects(run.definition ? makeS3Client() : clientOf(template, principals, (r) => r.Type === 'AWS::StepFunctions::StateMachine'));
  const unguarded: ServiceGuard = (input, call) => call(input);
  const mapRuns = [...maps.values()].map((map) => [map.name, mapRun(map)] as const);

  // AWS fails a state whose payload is over its limit (States.DataLimitExceeded); locally the run stops there, in
  // every execution it has going (the parent and the Map Runs' children).
  const running = new Set<() => void>();
  let limitHit: string | undefined;
  const dataLimit = (cause: string) => {
    limitHit ??= cause;
    for (const abort of running) abort();
    return Object.assign(new Error(cause), { name: 'States.DataLimitExceeded' });
  };
  const retryIntervalOverrides = {
    ...Object.fromEntries([...Object.keys(handlers), ...maps.keys()].map((s) => [s, 0])),
    ...run.retryIntervalOverrides,
  };
  /** The task handlers of one execution, with a payload watch of its own (an inline Map gathers per execution). */
  const handlersFor = (executionArn: string) => {
    const watch = payloadWatch(deployed);
    const checked = (state: string, h: Handler): Handler => async (input) => {
      const over = watch.input(state, input);
      if (over) throw dataLimit(over);
      const output = await h(input);
      const tooBig = watch.result(state, output);
      if (tooBig) throw dataLimit(tooBig);
      return output;
    };
    const tasks = Object.entries(handlers).map(([state, h]) => {
      const guard = guards.get(state) ?? unguarded;
      return [state, checked(state, (input) => guard(input, intercepted(state, h)))] as const;
    });
    const env = (map: string): MapRunEnv => ({
      executionArn,
      start,
      readItems: intercepted(`${map}${READ_ITEMS}`, mapS3.readJson),
      putObject: mapS3.putJson,
      dataLimit,
      emit: run.onEvent,
    });
    const mapTasks = mapRuns.map(([map, runFor]) => [map, checked(map, runFor(env(map)) as Handler)] as const);
    return Object.fromEntries([...tasks, ...mapTasks]) as Record<string, (input: Json) => Promise<Json>>;
  };
  function start(machine: StateMachine, input: Json, execution: { Id: string; Name: string }) {
    const started = machine.run(input, {
      // The wait for a new role to propagate through IAM is AWS's; the local account has none.
      overrides: { taskResourceLocalHandlers: handlersFor(execution.Id), retryIntervalOverrides, waitTimeOverrides: { [STATE.awaitRunRole]: 0 } },
      context: { Execution: execution },
    });
    running.add(started.abort);
    const done = () => running.delete(started.abort);
    started.result.then(done, done);
    return started;
  }

  const input = { bucket: run.bucket, key: run.key, runId };
  const execution = start(new StateMachine(definition), input, {
    Id: `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:execution:local:${runId}`,
    Name: runId,
  });
  const forwarding = run.onEvent ? forwardEvents(execution.eventLogs, run.onEvent) : Promise.resolve();
  const failedOnLimit = (cause: string): WorkflowResult<T> => ({
    runId,
    status: 'FAILED',
    error: { name: 'States.DataLimitExceeded', cause },
    train: trained?.value,
    notifications,
    runAccessLeft: access.account.runAccessLeft(),
  });
  try {
    const output = await execution.result;
    if (limitHit) return failedOnLimit(limitHit);
    return { runId, status: 'SUCCEEDED', output, train: trained?.value, notifications, runAccessLeft: access.account.runAccessLeft() };
  } catch (e) {
    if (limitHit && (e instanceof ExecutionAbortedError || e instanceof ExecutionError)) return failedOnLimit(limitHit);
    if (!(e instanceof ExecutionError)) throw e;
    const cause = (e as Error & { cause?: { name?: string; message?: string } }).cause;
    return {
      runId,
      status: 'FAILED',
      error: { name: cause?.name ?? 'ExecutionError', cause: cause?.message ?? e.message },
      train: trained?.value,
      notifications,
      runAccessLeft: access.account.runAccessLeft(),
    };
  } finally {
    await forwarding;
  }
}

async function forwardEvents(events: AsyncIterable<WorkflowEvent>, onEvent: (event: WorkflowEvent) => void): Promise<void> {
  for await (const event of events) onEvent(event);
}

/**
 * Local uploads through the real routing: each S3 put becomes the EventBridge event S3 would send, is matched
 * against the upload rule's pattern from the template, and goes to the trigger handler, whose StartExecution
 * here starts runWorkflowLocally (a name already used is ExecutionAlreadyExists, as on AWS).
 */
export class LocalPipeline<T> {
  private readonly runs = new Map<string, Promise<WorkflowResult<T>>>();

  constructor(private readonly options: LocalWorkflowOptions<T>) {
    useEndpoint(options.s3Endpoint);
  }

  /** Routes one put; [] when the upload rule does not match it (an image, another prefix). */
  async objectCreated(put: S3Put): Promise<StartResult[]> {
    const event = objectCreatedEvent(put.versionId || put.etag ? put : { ...put, ...(await currentVersion(put.bucket, put.key)) });
    const template = synthesizeTemplate('aws');
    if (!matchesEventPattern(uploadRulePattern(template, put.bucket), event)) return [];
    const triggerRole = clientOf(template, templatePrincipals(template, put.bucket), (r) => r.Type === 'AWS::Lambda::Function' && TRIGGER_ENV in ((r.Properties?.Environment as { Variables?: object } | undefined)?.Variables ?? {}));
    return trigger(event, async (name, input) => {
      if (this.runs.has(name)) {
        throw Object.assign(new Error(`Execution Already Exists: '${name}'`), { name: 'ExecutionAlreadyExists' });
      }
      const run = runWorkflowLocally({ ...this.options, ...(JSON.parse(input) as LocalRunInput) });
      run.catch(() => undefined); // awaited through result(); not an unhandled rejection meanwhile
      this.runs.set(name, run);
    }, triggerRole);
  }

  /** The started runs' ids, in start order. */
  get runIds(): string[] {
    return [...this.runs.keys()];
  }

  result(runId: string): Promise<WorkflowResult<T>> {
    const run = this.runs.get(runId);
    if (!run) throw new Error(`no local run ${runId} (started: ${this.runIds.join(', ') || 'none'})`);
    return run;
  }
}
