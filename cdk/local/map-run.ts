/**
 * A Distributed Map's Map Run, emulated in-process: the handler of the Task that rewrite.ts puts in the Map's
 * place. It reads the items (ItemReader from S3, or ItemsPath), applies ItemSelector and ItemBatcher, runs each
 * child execution as a state machine of its own under MaxConcurrency, applies the tolerated failure threshold and
 * returns what the Map would: its children's results, or with a ResultWriter the files AWS writes to S3 and where.
 */
import { randomUUID } from 'node:crypto';
import {
  ExecutionAbortedError,
  ExecutionError,
  ExecutionTimeoutError,
  StateMachine,
  type StateMachineDefinition,
} from 'aws-local-stepfunctions';
import { gatheredOverLimit, jsonBytes, MAX_STATE_PAYLOAD_BYTES } from './aws-rules.ts';
import type { DistributedMap } from './rewrite.ts';

export type Json = Parameters<StateMachine['run']>[0];
type Execution = ReturnType<StateMachine['run']>;
export type LibraryEvent = Execution['eventLogs'] extends AsyncGenerator<infer E> ? E : never;

/** What the parent's history says of a Map Run on AWS (MapRunStarted, MapRunSucceeded, MapRunFailed), locally. */
export interface MapRunEvent {
  type: 'MapRunStarted' | 'MapRunSucceeded' | 'MapRunFailed';
  timestamp: number;
  state: { name: string; type: 'Map'; input: Json };
  mapRunArn: string;
  items: number;
  /** Child executions: one per item, or per batch with an ItemBatcher. */
  executions: number;
  Error?: string;
  Cause?: string;
}

export type WorkflowEvent = LibraryEvent | MapRunEvent;

export interface MapRunEnv {
  /** The execution the Map runs in. */
  executionArn: string;
  /** Starts an execution with the run's task handlers, retry overrides and quota checks. */
  start(machine: StateMachine, input: Json, execution: { Id: string; Name: string }): Execution;
  /** The parsed JSON object a JSON ItemReader's Parameters name (an intercept sees this read as `<Map>__ReadItems`). */
  readItems(params: unknown): Promise<unknown>;
  putObject(bucket: string, key: string, body: string): Promise<void>;
  /** Stops the run, as AWS fails it with States.DataLimitExceeded; the error to throw. */
  dataLimit(cause: string): Error;
  emit?(event: WorkflowEvent): void;
}

/** AWS runs up to 10,000 children at once (MaxConcurrency 0); a process gains nothing from more than this. */
const LOCAL_MAX_CONCURRENCY = 40;

const error = (name: string, message: string) => Object.assign(new Error(message), { name });
const notEmulated = (map: string, what: string) => error('LocalRunner.NotEmulated', `state ${map}: ${what} is not emulated by the local runner`);

/** The error an execution failed with, out of the library's ExecutionError. */
const causeOf = (e: unknown) => (e instanceof ExecutionError ? ((e as { cause?: unknown }).cause ?? e) : e) as Error;

type Context = Record<string, unknown>;

/**
 * A JSONPath payload template (`.$` fields, `$$` context paths, intrinsic functions), resolved the way the
 * library resolves a state's Parameters: as a Pass state's. (The library sets `$$.Execution.Input` and
 * `StartTime` to the Pass machine's own, so those two read differently here than on AWS.)
 */
function payloadTemplate(template: unknown): (input: Json, context: Context) => Promise<Json> {
  const machine = new StateMachine(
    { StartAt: 'Resolve', States: { Resolve: { Type: 'Pass', Parameters: template as Json, End: true } } } as StateMachineDefinition,
    { validationOptions: { noValidate: true } },
  );
  return async (input, context) => {
    try {
      return await machine.run(input, { context }).result;
    } catch (e) {
      throw causeOf(e);
    }
  };
}

/** A number field given as a literal or as a `...Path` into the Map's input. */
function numberField(fields: object, key: string): (input: Json, context: Context) => Promise<number | undefined> {
  const literal = (fields as Record<string, unknown>)[key];
  const path = (fields as Record<string, unknown>)[`${key}Path`];
  if (typeof path !== 'string') return async () => (literal === undefined ? undefined : Number(literal));
  const resolve = payloadTemplate({ 'value.$': path });
  return async (input, context) => Number(((await resolve(input, context)) as { value: unknown }).value);
}

interface ItemReader {
  Resource?: string;
  ReaderConfig?: { InputType?: string; MaxItems?: number; MaxItemsPath?: string };
  Parameters?: unknown;
  Arguments?: unknown;
}
interface ItemBatcher {
  MaxItemsPerBatch?: number;
  MaxItemsPerBatchPath?: string;
  MaxInputBytesPerBatch?: number;
  MaxInputBytesPerBatchPath?: string;
  BatchInput?: unknown;
}
interface ResultWriter {
  Resource?: string;
  Parameters?: unknown;
  Arguments?: unknown;
  WriterConfig?: { OutputType?: 'JSON' | 'JSONL'; Transformation?: 'NONE' | 'COMPACT' | 'FLATTEN' };
}

type Status = 'PENDING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT';
interface Child {
  index: number;
  input: Json;
  items: number;
  name: string;
  arn: string;
  status: Status;
  startDate?: string;
  stopDate?: string;
  output?: Json;
  failure?: { Error: string; Cause: string };
}

/**
 * The Map Run of `map`: `(env) => handler`, where the handler takes the Map's effective input (after InputPath)
 * and returns its result (before ResultSelector and ResultPath, which the Task applies as the Map would).
 */
export function mapRun(map: DistributedMap): (env: MapRunEnv) => (input: Json) => Promise<Json> {
  const { name, state } = map;
  const reader = state.ItemReader as ItemReader | undefined;
  const batcher = state.ItemBatcher as ItemBatcher | undefined;
  const writer = state.ResultWriter as ResultWriter | undefined;
  const label = (state.Label as string | undefined) ?? name;
  if (reader && (reader.Resource !== 'arn:aws:states:::s3:getObject' || reader.ReaderConfig?.InputType !== 'JSON')) {
    throw notEmulated(name, `an ItemReader other than a JSON array read with s3:getObject (${reader.Resource}, ${reader.ReaderConfig?.InputType})`);
  }
  if (reader?.Arguments !== undefined || writer?.Arguments !== undefined) throw notEmulated(name, 'JSONata Arguments');
  if (writer?.Resource !== undefined && writer.Resource !== 'arn:aws:states:::s3:putObject') {
    throw notEmulated(name, `a ResultWriter Resource other than s3:putObject (${writer.Resource})`);
  }
  const processor = new StateMachine(map.processor);
  const readerParams = payloadTemplate(reader?.Parameters ?? {});
  const maxItems = numberField(reader?.ReaderConfig ?? {}, 'MaxItems');
  const itemsAt = payloadTemplate({ 'items.$': (state.ItemsPath as string | undefined) ?? '$' });
  const selector = state.ItemSelector ?? state.Parameters;
  const select = selector === undefined ? undefined : payloadTemplate(selector);
  const batchInput = batcher?.BatchInput === undefined ? undefined : payloadTemplate(batcher.BatchInput);
  const maxItemsPerBatch = numberField(batcher ?? {}, 'MaxItemsPerBatch');
  const maxBytesPerBatch = numberField(batcher ?? {}, 'MaxInputBytesPerBatch');
  const maxConcurrency = numberField(state, 'MaxConcurrency');
  const toleratedCount = numberField(state, 'ToleratedFailureCount');
  const toleratedPercentage = numberField(state, 'ToleratedFailurePercentage');
  const writerParams = payloadTemplate(writer?.Parameters ?? {});
  const transformation = writer?.WriterConfig?.Transformation ?? (writer?.Resource ? 'NONE' : 'COMPACT');

  return (env) => async (input) => {
    const [, , , region, account, , machineName, executionName] = env.executionArn.split(':');
    const context: Context = { Execution: { Id: env.executionArn, Name: executionName } };

    let items: unknown[];
    if (reader) {
      const params = await readerParams(input, context);
      let read: unknown;
      try {
        read = await env.readItems(params);
      } catch (e) {
        throw error('States.ItemReaderFailed', `${(e as Error).name}: ${(e as Error).message}`);
      }
      if (!Array.isArray(read)) throw error('States.ItemReaderFailed', `${JSON.stringify(params)}: the JSON is not an array`);
      const limit = await maxItems(input, context);
      items = limit ? read.slice(0, limit) : read;
    } else {
      items = ((await itemsAt(input, context)) as { items: unknown }).items as unknown[];
      if (!Array.isArray(items)) throw error('States.Runtime', `state ${name}: ItemsPath does not point to an array`);
    }
    const selected = select
      ? await Promise.all(items.map((Value, Index) => select(input, { ...context, Map: { Item: { Index, Value } } })))
      : (items as Json[]);
    const groups = batcher
      ? batches(selected, {
          maxItems: (await maxItemsPerBatch(input, context)) || Number.POSITIVE_INFINITY,
          // The batch is the child's input, which may be 256 KiB at most, so the batcher never goes past that.
          maxBytes: Math.min((await maxBytesPerBatch(input, context)) || MAX_STATE_PAYLOAD_BYTES, MAX_STATE_PAYLOAD_BYTES),
          batchInput: batchInput && (await batchInput(input, context)),
        })
      : selected.map((one) => ({ input: one, items: 1 }));

    const mapRunId = randomUUID();
    const mapRunArn = `arn:aws:states:${region}:${account}:mapRun:${machineName}/${label}:${mapRunId}`;
    const children: Child[] = groups.map((g, index) => {
      const childName = randomUUID();
      return { ...g, index, name: childName, arn: `arn:aws:states:${region}:${account}:execution:${machineName}/${label}:${childName}`, status: 'PENDING' };
    });
    const stateMachineArn = `arn:aws:states:${region}:${account}:stateMachine:${machineName}/${label}`;
    const parentState = { name, type: 'Map' as const, input };
    const runEvent = (type: MapRunEvent['type'], failure?: { Error: string; Cause: string }) =>
      env.emit?.({ type, timestamp: Date.now(), state: parentState, mapRunArn, items: items.length, executions: children.length, ...failure });
    runEvent('MapRunStarted');

    const concurrency = Math.min((await maxConcurrency(input, context)) || LOCAL_MAX_CONCURRENCY, LOCAL_MAX_CONCURRENCY);
    const [count, percentage] = [await toleratedCount(input, context), await toleratedPercentage(input, context)];
    // With neither set, the threshold is 0: any failed item fails the Map Run.
    const exceeds = (failedItems: number) =>
      failedItems > 0 &&
      ((count === undefined && percentage === undefined) ||
        (count !== undefined && failedItems > count) ||
        (percentage !== undefined && (failedItems * 100) / items.length > percentage));
    const gathersInState = !writer?.Resource;
    let failedItems = 0;
    let gatheredBytes = 1;
    let stop: unknown;
    let next = 0;

    const forward = async (events: Execution['eventLogs'], index: number) => {
      for await (const event of events) {
        const iteration = { timestamp: event.timestamp, parentState, index };
        if (event.type === 'ExecutionStarted') env.emit!({ type: 'MapIterationStarted', ...iteration });
        else if (event.type === 'ExecutionSucceeded') env.emit!({ type: 'MapIterationSucceeded', ...iteration });
        else if (event.type === 'ExecutionFailed') env.emit!({ type: 'MapIterationFailed', ...iteration, Error: event.Error, Cause: event.Cause });
        else if (event.type !== 'ExecutionAborted' && event.type !== 'ExecutionTimeout') env.emit!({ ...event, index } as LibraryEvent);
      }
    };
    const runChild = async (child: Child) => {
      const inputBytes = jsonBytes(child.input);
      if (inputBytes > MAX_STATE_PAYLOAD_BYTES) {
        throw env.dataLimit(`state ${name}: a child execution's input of ${inputBytes} bytes is over Step Functions' limit of ${MAX_STATE_PAYLOAD_BYTES}`);
      }
      child.startDate = new Date().toISOString();
      const execution = env.start(processor, child.input, { Id: child.arn, Name: child.name });
      const forwarding = env.emit ? forward(execution.eventLogs, child.index) : undefined;
      try {
        child.output = await execution.result;
        child.status = 'SUCCEEDED';
      } catch (e) {
        if (e instanceof ExecutionAbortedError) throw e;
        const cause = causeOf(e);
        child.status = e instanceof ExecutionTimeoutError ? 'TIMED_OUT' : 'FAILED';
        child.failure = e instanceof ExecutionTimeoutError ? { Error: 'States.Timeout', Cause: cause.message } : { Error: cause.name, Cause: cause.message };
      } finally {
        child.stopDate = new Date().toISOString();
        await forwarding;
      }
      const outputBytes = jsonBytes(child.output);
      if (child.status === 'SUCCEEDED' && outputBytes > MAX_STATE_PAYLOAD_BYTES) {
        throw env.dataLimit(`state ${name}: a child execution's output of ${outputBytes} bytes is over Step Functions' limit of ${MAX_STATE_PAYLOAD_BYTES}`);
      }
      if (child.status !== 'SUCCEEDED') failedItems += child.items;
      if (gathersInState) {
        for (const result of childResults(child, transformation, stateMachineArn)) gatheredBytes += jsonBytes(result) + 1;
        if (gatheredBytes > MAX_STATE_PAYLOAD_BYTES) throw env.dataLimit(gatheredOverLimit(name));
      }
    };
    // Once past the threshold no child starts; those running end (AWS too may run some before the Map Run fails).
    const worker = async () => {
      while (next < children.length && stop === undefined && !exceeds(failedItems)) {
        await runChild(children[next++]!).catch((e: unknown) => {
          stop ??= e;
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, children.length) }, worker));
    if (stop !== undefined) throw stop;

    const results = transformed(children, transformation, stateMachineArn);
    let output: Json = results.inState;
    if (writer?.Resource) {
      const { Bucket, Prefix } = (await writerParams(input, context)) as { Bucket: string; Prefix?: string };
      const base = !Prefix ? `${mapRunId}/` : `${Prefix.replace(/\/$/, '')}/${mapRunId}/`;
      const jsonl = writer.WriterConfig?.OutputType === 'JSONL';
      const resultFiles: Record<string, { Key: string; Size: number }[]> = { FAILED: [], PENDING: [], SUCCEEDED: [] };
      const put = async (key: string, body: string) => {
        try {
          await env.putObject(Bucket, key, body);
        } catch (e) {
          throw error('States.ResultWriterFailed', `s3://${Bucket}/${key}: ${(e as Error).name}: ${(e as Error).message}`);
        }
      };
      for (const status of ['SUCCEEDED', 'FAILED', 'PENDING'] as const) {
        const entries = results.files[status];
        if (entries.length === 0) continue;
        const body = jsonl ? entries.map((e) => `${JSON.stringify(e)}\n`).join('') : JSON.stringify(entries);
        const key = `${base}${status}_0.json`;
        await put(key, body);
        resultFiles[status]!.push({ Key: key, Size: Buffer.byteLength(body) });
      }
      const manifestKey = `${base}manifest.json`;
      await put(manifestKey, JSON.stringify({ DestinationBucket: Bucket, MapRunArn: mapRunArn, ResultFiles: resultFiles }));
      output = { MapRunArn: mapRunArn, ResultWriterDetails: { Bucket, Key: manifestKey } };
    }

    if (exceeds(failedItems)) {
      const first = children.find((c) => c.failure)!.failure!;
      const tolerated = [count !== undefined && `${count} items`, percentage !== undefined && `${percentage}%`].filter(Boolean).join(', ') || 'none';
      // AWS's cause is the first sentence; the counts and the first failure are added for whoever reads it locally.
      const failure = {
        Error: 'States.ExceedToleratedFailureThreshold',
        Cause: `The specified tolerated failure threshold was exceeded: ${failedItems} of ${items.length} items failed (tolerated: ${tolerated}); first failure: ${first.Error}: ${first.Cause}`,
      };
      runEvent('MapRunFailed', failure);
      throw error(failure.Error, failure.Cause);
    }
    runEvent('MapRunSucceeded');
    return output;
  };
}

/** ItemBatcher's batches: as many items as fit under both limits, each batch the input `{ BatchInput?, Items }`. */
function batches(items: Json[], limits: { maxItems: number; maxBytes: number; batchInput?: Json }): { input: Json; items: number }[] {
  const inputOf = (batch: Json[]): Json => (limits.batchInput === undefined ? { Items: batch } : { BatchInput: limits.batchInput, Items: batch });
  const emptyBytes = jsonBytes(inputOf([]));
  const out: { input: Json; items: number }[] = [];
  let batch: Json[] = [];
  let bytes = emptyBytes;
  for (const item of items) {
    const size = jsonBytes(item);
    // Each item after the first adds a comma.
    if (batch.length > 0 && (batch.length >= limits.maxItems || bytes + 1 + size > limits.maxBytes)) {
      out.push({ input: inputOf(batch), items: batch.length });
      batch = [];
      bytes = emptyBytes;
    }
    bytes += size + (batch.length > 0 ? 1 : 0);
    batch.push(item);
  }
  if (batch.length > 0) out.push({ input: inputOf(batch), items: batch.length });
  return out;
}

/** A child as AWS lists it in a ResultWriter file (Transformation NONE), and as it returns a failed child always. */
function resultEntry(child: Child, stateMachineArn: string): Json {
  const succeeded = child.status === 'SUCCEEDED';
  return {
    ExecutionArn: child.arn,
    Input: JSON.stringify(child.input),
    InputDetails: { Included: true },
    Name: child.name,
    ...(succeeded ? { Output: JSON.stringify(child.output), OutputDetails: { Included: true } } : { ...child.failure! }),
    RedriveCount: 0,
    ...(succeeded ? { RedriveStatus: 'NOT_REDRIVABLE', RedriveStatusReason: 'Execution is SUCCEEDED and cannot be redriven' } : {}),
    StartDate: child.startDate!,
    StateMachineArn: stateMachineArn,
    Status: child.status,
    StopDate: child.stopDate!,
  };
}

/**
 * What a finished child adds to the results under WriterConfig's Transformation: NONE lists it whole, COMPACT gives
 * its output, FLATTEN spreads an output that is an array; a failed child is always listed whole.
 */
function childResults(child: Child, transformation: string, stateMachineArn: string): Json[] {
  if (child.status !== 'SUCCEEDED' || transformation === 'NONE') return [resultEntry(child, stateMachineArn)];
  return transformation === 'FLATTEN' && Array.isArray(child.output) ? child.output : [child.output!];
}

/** The results in the state (no ResultWriter Resource), in item order; for S3, by status, the children never started as PENDING. */
function transformed(children: Child[], transformation: string, stateMachineArn: string) {
  const files: Record<'SUCCEEDED' | 'FAILED' | 'PENDING', Json[]> = { SUCCEEDED: [], FAILED: [], PENDING: [] };
  const inState: Json[] = [];
  for (const child of children) {
    if (child.status === 'PENDING') {
      files.PENDING.push({ Input: JSON.stringify(child.input), InputDetails: { Included: true } });
      continue;
    }
    const results = childResults(child, transformation, stateMachineArn);
    files[child.status === 'SUCCEEDED' ? 'SUCCEEDED' : 'FAILED'].push(...results);
    inState.push(...results);
  }
  return { files, inState };
}
