/**
 * AWS rules that aws-local-stepfunctions does not apply (names, payload sizes, service quotas): the local runner
 * checks them where AWS would, so a run that AWS refuses fails here too, with the rule named.
 */
import { actingAs, type Principal } from './iam-policy.ts';
import type { Template } from './synth.ts';

/** SubmitJob's jobName: 1-128 letters, digits, hyphens and underscores, the first a letter or digit. */
const BATCH_JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
/** StartExecution's name as the trigger makes it: 1-80 of [A-Za-z0-9_-] (what every execution type accepts). */
const EXECUTION_NAME = /^[A-Za-z0-9_-]{1,80}$/;

const refused = (name: string, message: string) => Object.assign(new Error(message), { name });

export function checkBatchJobName(jobName: unknown): void {
  if (typeof jobName !== 'string' || !BATCH_JOB_NAME.test(jobName)) {
    throw refused(
      'Batch.ClientException',
      `SubmitJob: job name ${JSON.stringify(jobName)} breaks AWS Batch's rule (1-128 letters, digits, '-' and '_', starting with a letter or digit)`,
    );
  }
}

export function checkExecutionName(name: string): void {
  if (!EXECUTION_NAME.test(name)) {
    throw refused('InvalidName', `StartExecution: execution name ${JSON.stringify(name)} breaks Step Functions' rule (1-80 of letters, digits, '-' and '_')`);
  }
}

/**
 * ECS RunTask, to which Batch hands a job's container, allows "a total of 8192 characters ... for overrides", a
 * limit that "includes the JSON formatting characters of the override structure" (Amazon ECS API Reference,
 * RunTask, `overrides`: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html). Batch takes
 * the SubmitJob and fails the job at dispatch with "Container Overrides length must be at most 8192". It adds
 * AWS_BATCH_* variables of its own to what it passes on, so somewhat less than this is left for the SubmitJob's
 * ContainerOverrides, which is all that is measured here.
 */
const MAX_CONTAINER_OVERRIDES_CHARS = 8192;

export function checkContainerOverrides(jobName: unknown, overrides: unknown): void {
  if (overrides === undefined) return;
  const chars = JSON.stringify(overrides).length;
  if (chars > MAX_CONTAINER_OVERRIDES_CHARS) {
    // A .sync SubmitJob whose job fails ends the Task in States.TaskFailed.
    throw refused(
      'States.TaskFailed',
      `Batch job ${String(jobName)} FAILED: Container Overrides length must be at most ${MAX_CONTAINER_OVERRIDES_CHARS} (the SubmitJob's ContainerOverrides are ${chars} characters of JSON; ECS RunTask's quota on overrides)`,
    );
  }
}

/** Step Functions' cap on a state's input, output and a Map's gathered results: 256 KiB of UTF-8 JSON. */
export const MAX_STATE_PAYLOAD_BYTES = 256 * 1024;

export const jsonBytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v) ?? 'null', 'utf8');

/** A Map's results gathered into its state over 256 KiB: AWS fails it with States.DataLimitExceeded. */
export const gatheredOverLimit = (map: string) =>
  `state ${map}: its iterations' results gathered are over Step Functions' limit of ${MAX_STATE_PAYLOAD_BYTES} bytes; a Distributed Map needs a ResultWriter`;

type AslState = Record<string, unknown> & { Type?: string; End?: boolean };
type AslMachine = { States: Record<string, AslState> };

const processorOf = (state: AslState) => (state.ItemProcessor ?? state.Iterator) as AslMachine & { ProcessorConfig?: { Mode?: string } };

/** Every state of a definition, those of Map processors and Parallel branches included. */
function* allStates(machine: AslMachine): Generator<[string, AslState]> {
  for (const [name, state] of Object.entries(machine.States)) {
    yield [name, state];
    if (state.Type === 'Map') yield* allStates(processorOf(state));
    if (state.Type === 'Parallel') for (const branch of state.Branches as AslMachine[]) yield* allStates(branch);
  }
}

export interface PayloadWatch {
  /** Why AWS refuses this Task input (States.DataLimitExceeded), if it does. */
  input(state: string, value: unknown): string | undefined;
  /** The same for a Task result, and for an inline Map's iteration results as it gathers them. */
  result(state: string, value: unknown): string | undefined;
}

/**
 * Checks Task inputs and results for what AWS refuses with States.DataLimitExceeded: over 256 KiB, and, for an
 * inline Map, its iterations' results gathered into one array over it (AWS gathers them even when ResultPath
 * discards them). One watch per execution, since it adds up what that execution's Maps gather. A Distributed Map's
 * results are checked by its Map Run emulation (map-run.ts), which gathers them itself.
 */
export function payloadWatch(definition: unknown): PayloadWatch {
  // Each inline Map, by the states whose result ends one of its iterations.
  const gathering = new Map<string, string>();
  for (const [name, state] of allStates(definition as AslMachine)) {
    if (state.Type !== 'Map') continue;
    const processor = processorOf(state);
    if (processor.ProcessorConfig?.Mode === 'DISTRIBUTED') continue;
    for (const [inner, s] of Object.entries(processor.States)) if (s.End || s.Type === 'Succeed') gathering.set(inner, name);
  }
  const gathered = new Map<string, number>();
  const over = (state: string, what: string, value: unknown) => {
    const bytes = jsonBytes(value);
    return bytes > MAX_STATE_PAYLOAD_BYTES ? `state ${state}: ${what} of ${bytes} bytes is over Step Functions' limit of ${MAX_STATE_PAYLOAD_BYTES}` : undefined;
  };
  return {
    input: (state, value) => over(state, 'input', value),
    result(state, value) {
      const tooBig = over(state, 'result', value);
      if (tooBig) return tooBig;
      const map = gathering.get(state);
      if (!map) return undefined;
      // The gathered array: every iteration's result, a comma between, brackets around.
      const total = (gathered.get(map) ?? 1) + jsonBytes(value) + 1;
      gathered.set(map, total);
      return total > MAX_STATE_PAYLOAD_BYTES ? gatheredOverLimit(map) : undefined;
    },
  };
}

/**
 * Lambda's quota on a synchronous invocation's request and response: 6 MB (6,291,456 bytes; Lambda's own response
 * error names 6,291,556). Only the response needs a check of its own: the request is the Task's input (or part of
 * it), which Step Functions holds to 256 KiB before it schedules the Task, and payloadWatch checks that first.
 */
const MAX_LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024;

export interface LambdaLimits {
  functionName: string;
  memoryMb: number;
  timeoutSeconds: number;
}

/** A function's MemorySize and Timeout as the template configures them, Lambda's defaults (128 MB, 3 s) when unset. */
function lambdaLimits(template: Template, logicalId: string): LambdaLimits | undefined {
  const fn = template.Resources[logicalId];
  if (fn?.Type !== 'AWS::Lambda::Function') return undefined;
  const props = fn.Properties ?? {};
  return { functionName: logicalId, memoryMb: Number(props.MemorySize ?? 128), timeoutSeconds: Number(props.Timeout ?? 3) };
}

/** The function a FunctionName names, as asl.ts resolves them (an ARN ending in the logical ID, or the ID itself). */
const functionId = (nameOrArn: string) => /:function:([^:]+)/.exec(nameOrArn)?.[1] ?? nameOrArn;

let lambdasRunning = 0;

/**
 * Runs one invocation under its function's Timeout and MemorySize. A timeout fails it as Lambda does
 * (Sandbox.Timedout), though the handler, which cannot be stopped in-process, runs on. Memory is an estimate:
 * the growth of this process's RSS from the start of the call to its highest point while it runs, shared out
 * among the invocations running at the same time; it misses memory an earlier call left allocated and the
 * runtime's own footprint, so it catches a handler that grows by more than its function has, not one that is close.
 */
export async function withinLambdaLimits<T>(limits: LambdaLimits, call: () => Promise<T>): Promise<T> {
  const rss = () => process.memoryUsage.rss();
  const start = rss();
  let peak = start;
  let sharedBy = ++lambdasRunning;
  const sample = () => {
    peak = Math.max(peak, rss());
    sharedBy = Math.max(sharedBy, lambdasRunning);
  };
  const sampler = setInterval(sample, 20);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(refused('Sandbox.Timedout', `Task timed out after ${limits.timeoutSeconds.toFixed(2)} seconds (the Timeout of ${limits.functionName})`)),
      limits.timeoutSeconds * 1000,
    );
  });
  try {
    const output = await Promise.race([call(), timedOut]);
    sample();
    const grownMb = (peak - start) / sharedBy / 2 ** 20;
    if (grownMb > limits.memoryMb) {
      throw refused(
        'Runtime.OutOfMemory',
        `${limits.functionName} used about ${Math.round(grownMb)} MB, over its MemorySize of ${limits.memoryMb} MB (estimated locally from the process's RSS)`,
      );
    }
    return output;
  } finally {
    clearInterval(sampler);
    clearTimeout(timer);
    lambdasRunning--;
  }
}

/** Lambda fails an oversized response as an error of the function, which is the Task's error. */
function checkLambdaResponse(functionName: string, payload: unknown): void {
  const bytes = jsonBytes(payload);
  if (bytes <= MAX_LAMBDA_PAYLOAD_BYTES) return;
  throw refused(
    'Function.ResponseSizeTooLarge',
    `Response payload size exceeded maximum allowed payload size: ${functionName}'s response payload is ${bytes} bytes, over Lambda's 6 MB quota on synchronous invocations (${MAX_LAMBDA_PAYLOAD_BYTES} bytes)`,
  );
}

/** Runs a Task's call to its service (`call`) under the service's rules. */
export type ServiceGuard = (input: unknown, call: (input: unknown) => Promise<unknown>) => Promise<unknown>;

const LAMBDA_INVOKE = 'arn:aws:states:::lambda:invoke';
const BATCH_SUBMIT_JOB = 'arn:aws:states:::batch:submitJob';

/**
 * The service rules of each Task of a definition (Map processors included), by state name: Lambda's response
 * payload, Timeout and MemorySize (the function's, from `template`) for Lambda Tasks, in either form (the
 * function's ARN as the Resource; lambda:invoke, which names it in FunctionName and answers with the response in
 * Payload), each invocation acting as its function's role from `roles` (by logical ID; iam-policy.ts
 * enforceActing); Batch's job name and container overrides for SubmitJob.
 */
export function serviceGuards(definition: unknown, template: Template, roles: ReadonlyMap<string, Principal> = new Map()): Map<string, ServiceGuard> {
  const limitsOf = (state: string, nameOrArn: string) => {
    const limits = lambdaLimits(template, functionId(nameOrArn));
    if (!limits) throw new Error(`state ${state} invokes ${nameOrArn}, which is not a Lambda function of the template`);
    return limits;
  };
  const guards = new Map<string, ServiceGuard>();
  for (const [name, state] of allStates(definition as AslMachine)) {
    if (state.Type !== 'Task' || typeof state.Resource !== 'string') continue;
    const resource = state.Resource;
    if (resource.startsWith('arn:aws:lambda:')) {
      const limits = limitsOf(name, resource);
      guards.set(name, async (input, call) => {
        const output = await withinLambdaLimits(limits, () => actingAs(roles.get(limits.functionName), () => call(input)));
        checkLambdaResponse(limits.functionName, output);
        return output;
      });
    } else if (resource.startsWith(LAMBDA_INVOKE)) {
      guards.set(name, async (input, call) => {
        const limits = limitsOf(name, (input as { FunctionName: string }).FunctionName);
        const output = await withinLambdaLimits(limits, () => actingAs(roles.get(limits.functionName), () => call(input)));
        checkLambdaResponse(limits.functionName, (output as { Payload?: unknown } | null)?.Payload ?? null);
        return output;
      });
    } else if (resource.startsWith(BATCH_SUBMIT_JOB)) {
      guards.set(name, (input, call) => {
        const { JobName, ContainerOverrides } = input as { JobName?: unknown; ContainerOverrides?: unknown };
        checkBatchJobName(JobName);
        checkContainerOverrides(JobName, ContainerOverrides);
        return call(input);
      });
    }
  }
  return guards;
}
