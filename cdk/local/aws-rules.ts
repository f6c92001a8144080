/**
 * AWS rules that aws-local-stepfunctions does not apply (names, payload sizes): the local runner checks them where
 * AWS would, so a run that AWS refuses fails here too, with the rule named.
 */
import { READ_ITEMS } from './rewrite.ts';

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

/** Step Functions' cap on a state's input, output and a Map's gathered results: 256 KiB of UTF-8 JSON. */
export const MAX_STATE_PAYLOAD_BYTES = 256 * 1024;

const jsonBytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v) ?? 'null', 'utf8');

type AslState = Record<string, unknown> & { Type?: string; End?: boolean };
type AslMachine = { States: Record<string, AslState> };

/**
 * Checks each Task's input and result for what AWS refuses with States.DataLimitExceeded: over 256 KiB, and, for a
 * Map without a ResultWriter, its iterations' results gathered into one array over it (AWS gathers them even when
 * ResultPath discards them). Built from the definition as deployed, before the local rewrite drops ResultWriter;
 * the rewrite's item-reading Tasks stand for an ItemReader, which reads from S3 outside the payload.
 */
export function payloadWatch(definition: unknown): (state: string, input: unknown, output: unknown) => string | undefined {
  // Each Map without a ResultWriter, by the states whose result ends one of its iterations.
  const gathering = new Map<string, string>();
  const visit = (machine: AslMachine) => {
    for (const [name, state] of Object.entries(machine.States)) {
      if (state.Type !== 'Map') continue;
      const processor = (state.ItemProcessor ?? state.Iterator) as AslMachine;
      visit(processor);
      if (state.ResultWriter) continue;
      for (const [inner, s] of Object.entries(processor.States)) if (s.End || s.Type === 'Succeed') gathering.set(inner, name);
    }
  };
  visit(definition as AslMachine);
  const gathered = new Map<string, number>();
  return (state, input, output) => {
    if (state.endsWith(READ_ITEMS)) return undefined;
    for (const [what, value] of [['input', input], ['result', output]] as const) {
      const bytes = jsonBytes(value);
      if (bytes > MAX_STATE_PAYLOAD_BYTES) return `state ${state}: ${what} of ${bytes} bytes is over Step Functions' limit of ${MAX_STATE_PAYLOAD_BYTES}`;
    }
    const map = gathering.get(state);
    if (!map) return undefined;
    // The gathered array: every iteration's result, a comma between, brackets around.
    const total = (gathered.get(map) ?? 1) + jsonBytes(output) + 1;
    gathered.set(map, total);
    if (total > MAX_STATE_PAYLOAD_BYTES) {
      return `state ${map}: its iterations' results gathered are over Step Functions' limit of ${MAX_STATE_PAYLOAD_BYTES} bytes; a Distributed Map needs a ResultWriter`;
    }
    return undefined;
  };
}
