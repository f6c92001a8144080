/** Every refusal of a checkpoint: one line, naming the file first. Callers may turn it into a UserError. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(
    source: string,
    reason: string,
    /** 'missing' when there is no such file or object, so callers can say "not found" in their own words. */
    readonly kind: 'invalid' | 'missing' = 'invalid',
  ) {
    super(`${source}: ${reason}`.replace(/\s*\n\s*/g, ' '));
  }
}
