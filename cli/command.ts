/** Each `rsclip <name>` command lives in `cli/commands/<name>.ts` and default-exports one of these. */
export interface Command {
  /** One line for `rsclip help`. */
  summary: string;
  /** Receives the arguments after the command name; resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

/** A failure the user caused (bad data, bad flag): printed as one line, never with a stack trace. */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'UserError';
  }
}
