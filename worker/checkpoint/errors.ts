/** Every refusal of a checkpoint: one line, naming the file first. Callers may turn it into a UserError. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(source: string, reason: string) {
    super(`${source}: ${reason}`.replace(/\s*\n\s*/g, ' '));
  }
}
