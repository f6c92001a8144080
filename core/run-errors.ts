/**
 * A run that cannot proceed because of its inputs (missing or corrupt shards, a base model that is not there,
 * settings that contradict an existing checkpoint), not because of a bug: the CLI prints it as one line and Step
 * Functions sees `name` = 'TrainInputError'.
 */
export class TrainInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainInputError';
  }
}

/**
 * The attempt stopped itself, with a checkpoint, before its time ran out (the Batch attempt timeout, which is not
 * retried); the worker exits with ATTEMPT_DEADLINE_EXIT_CODE (core/run-spec.ts) so Batch runs the next attempt, which resumes.
 */
export class AttemptDeadline extends Error {
  constructor(readonly step: number) {
    super(`stopped at step ${step} with a checkpoint before the attempt's deadline; the next attempt resumes there`);
    this.name = 'AttemptDeadline';
  }
}

/**
 * A base checkpoint whose state dict does not fit the model config, refused as open_clip's strict load_state_dict
 * refuses it: keys the config does not declare (unexpected), keys it declares that the file lacks (missing), or a
 * tensor of another shape. A TrainInputError (one line in the CLI), named 'CheckpointMismatchError' for Step Functions.
 */
export class CheckpointMismatchError extends TrainInputError {
  constructor(
    message: string,
    readonly unexpected: readonly string[],
    readonly missing: readonly string[],
    readonly wrongShape: readonly { key: string; checkpoint: readonly number[]; config: readonly number[] }[],
  ) {
    super(message);
    this.name = 'CheckpointMismatchError';
  }
}
