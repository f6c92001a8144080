import { runFor } from './run-id.ts';

/** The variable that names the state machine the trigger starts (cdk/trigger.ts sets it). */
export const STATE_MACHINE_ARN_ENV = 'STATE_MACHINE_ARN';

/** StartExecution; rejects with an error named `ExecutionAlreadyExists` when the name was used before. */
export type StartExecution = (name: string, input: string) => Promise<void>;

export type StartResult =
  | { status: 'started' | 'duplicate'; runId: string; key: string }
  | { status: 'ignored'; key: string };

export async function startRun(
  start: StartExecution,
  bucket: string,
  key: string,
  content: string,
  versionId?: string,
): Promise<StartResult> {
  const run = runFor(bucket, key, content, versionId);
  if (!run) return { status: 'ignored', key };
  try {
    await start(run.name, JSON.stringify(run.input));
    return { status: 'started', runId: run.input.runId, key };
  } catch (e) {
    if ((e as { name?: string }).name === 'ExecutionAlreadyExists') return { status: 'duplicate', runId: run.input.runId, key };
    throw e;
  }
}
