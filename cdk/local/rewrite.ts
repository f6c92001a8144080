import type { StateMachineDefinition } from 'aws-local-stepfunctions';

/** The ASL as plain JSON: states are edited field by field. */
type AnyState = Record<string, unknown>;
type States = Record<string, AnyState>;
interface Machine {
  StartAt: string;
  States: States;
  ProcessorConfig?: AnyState;
}

/** Suffix of the Task inserted before each Distributed Map to fetch its items. */
export const READ_ITEMS = '__ReadItems';
export const ITEMS_PATH = '$.__items';

/**
 * AWS lets a Task without TimeoutSeconds run for a year; aws-local-stepfunctions would stop it after 60 s. The
 * longest timer Node keeps is 2^31-1 ms (24.8 days); a longer one fires at once.
 */
const AWS_DEFAULT_TASK_TIMEOUT_SECONDS = 24 * 24 * 3600;

function renameTargets(states: States, from: string, to: string): void {
  for (const state of Object.values(states)) {
    if (state.Next === from) state.Next = to;
    if (state.Default === from) state.Default = to;
    for (const c of (state.Catch as AnyState[] | undefined) ?? []) if (c.Next === from) c.Next = to;
    for (const c of (state.Choices as AnyState[] | undefined) ?? []) if (c.Next === from) c.Next = to;
  }
}

function rewriteStates(machine: Machine): void {
  const states = machine.States;
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task' && state.TimeoutSeconds === undefined && state.TimeoutSecondsPath === undefined) {
      state.TimeoutSeconds = AWS_DEFAULT_TASK_TIMEOUT_SECONDS;
    }
    if (state.Type !== 'Map') continue;
    const processor = (state.ItemProcessor ?? state.Iterator) as Machine;
    rewriteStates(processor);
    const reader = state.ItemReader as AnyState | undefined;
    if (reader) {
      // The reader becomes a Task (served locally by reading the object) whose result the Map iterates.
      const readName = `${name}${READ_ITEMS}`;
      renameTargets(states, name, readName);
      if (machine.StartAt === name) machine.StartAt = readName;
      states[readName] = {
        Type: 'Task',
        Resource: reader.Resource,
        Parameters: reader.Parameters,
        ResultPath: ITEMS_PATH,
        TimeoutSeconds: AWS_DEFAULT_TASK_TIMEOUT_SECONDS,
        Next: name,
        ...(state.Catch ? { Catch: state.Catch } : {}),
      };
      state.ItemsPath = ITEMS_PATH;
    }
    for (const key of ['ItemReader', 'ItemBatcher', 'ResultWriter', 'Label', 'ToleratedFailurePercentage',
      'ToleratedFailurePercentagePath', 'ToleratedFailureCount', 'ToleratedFailureCountPath']) {
      delete state[key];
    }
    if (processor.ProcessorConfig) processor.ProcessorConfig = { Mode: 'INLINE' };
  }
}

/**
 * What aws-local-stepfunctions cannot run, made runnable with the same data flow: each Distributed Map becomes
 * an inline Map fed by a `<Map>__ReadItems` Task (ItemReader's parameters, result at `$.__items`), and Tasks
 * without a timeout get AWS's instead of the library's 60 s. The input is not modified.
 */
export function rewriteForLocal(definition: StateMachineDefinition): StateMachineDefinition {
  const copy = structuredClone(definition) as unknown as Machine;
  rewriteStates(copy);
  return copy as unknown as StateMachineDefinition;
}
