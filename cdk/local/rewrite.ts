import type { StateMachineDefinition } from 'aws-local-stepfunctions';

/** The ASL as plain JSON: states are edited field by field. */
type AnyState = Record<string, unknown>;
type States = Record<string, AnyState>;
interface Machine {
  StartAt: string;
  States: States;
  ProcessorConfig?: AnyState;
}

/** What an intercept sees a Distributed Map's ItemReader as: `<Map>__ReadItems`, given the reader's resolved Parameters. */
export const READ_ITEMS = '__ReadItems';

/**
 * The Resource of the Task a Distributed Map becomes; any ARN the library accepts would do, since the Task
 * always runs its local handler (the Map Run emulation).
 */
export const MAP_RUN_RESOURCE = 'arn:aws:states:::map-run';

/**
 * AWS lets a Task without TimeoutSeconds run for a year; aws-local-stepfunctions would stop it after 60 s. The
 * longest timer Node keeps is 2^31-1 ms (24.8 days); a longer one fires at once.
 */
const AWS_DEFAULT_TASK_TIMEOUT_SECONDS = 24 * 24 * 3600;

/** The fields a Map shares with a Task: where its input comes from, where its result goes, and what follows. */
const TASK_FIELDS = ['Comment', 'InputPath', 'ResultSelector', 'ResultPath', 'OutputPath', 'Retry', 'Catch', 'Next', 'End'];

/** A Distributed Map as deployed, with its ItemProcessor rewritten into a machine the library runs on its own. */
export interface DistributedMap {
  name: string;
  state: AnyState;
  processor: StateMachineDefinition;
}

export interface LocalDefinition {
  definition: StateMachineDefinition;
  /** Every Distributed Map, nested ones included, by state name (unique across a whole state machine). */
  maps: Map<string, DistributedMap>;
}

const isDistributed = (state: AnyState) =>
  ((state.ItemProcessor ?? state.Iterator) as Machine | undefined)?.ProcessorConfig?.Mode === 'DISTRIBUTED';

function rewriteStates(machine: Machine, maps: Map<string, DistributedMap>): void {
  for (const [name, state] of Object.entries(machine.States)) {
    if (state.Type === 'Task' && state.TimeoutSeconds === undefined && state.TimeoutSecondsPath === undefined) {
      state.TimeoutSeconds = AWS_DEFAULT_TASK_TIMEOUT_SECONDS;
    }
    if (state.Type !== 'Map') continue;
    const processor = (state.ItemProcessor ?? state.Iterator) as Machine;
    rewriteStates(processor, maps);
    if (!isDistributed(state)) continue;
    // A child execution runs the processor as a state machine of its own, which has no ProcessorConfig.
    const childMachine: Machine = { ...processor };
    delete childMachine.ProcessorConfig;
    maps.set(name, { name, state: structuredClone(state), processor: childMachine as unknown as StateMachineDefinition });
    const task: AnyState = { Type: 'Task', Resource: MAP_RUN_RESOURCE, TimeoutSeconds: AWS_DEFAULT_TASK_TIMEOUT_SECONDS };
    for (const key of TASK_FIELDS) if (key in state) task[key] = state[key];
    machine.States[name] = task;
  }
}

/**
 * What aws-local-stepfunctions cannot run, made runnable with the same data flow: each Distributed Map becomes a
 * Task of the same name, input and output processing and transitions, whose handler emulates the Map Run from
 * `maps` (see map-run.ts); Tasks without a timeout get AWS's instead of the library's 60 s. The input is not
 * modified.
 */
export function rewriteForLocal(definition: StateMachineDefinition): LocalDefinition {
  const copy = structuredClone(definition) as unknown as Machine;
  const maps = new Map<string, DistributedMap>();
  rewriteStates(copy, maps);
  return { definition: copy as unknown as StateMachineDefinition, maps };
}
