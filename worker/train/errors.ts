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
