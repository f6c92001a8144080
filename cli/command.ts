import { parseArgs } from 'node:util';
import { z } from 'zod';
import { firstIssue } from '../core/schema-issue.ts';

/** A failure the user caused (bad data, bad flag): printed as one line, never with a stack trace. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * One flag, declared once: what the parser accepts, what usage and `--help` print, and the schema that turns what
 * was typed (undefined when absent) into the value the command receives. The schema's default is the flag's.
 */
export interface Flag<T> {
  readonly kind: 'string' | 'boolean';
  /** The value's placeholder in usage (`N`, `<dir>`). */
  readonly value: string;
  readonly help: string;
  readonly schema: z.ZodType<T, string | boolean | undefined>;
}

type Flags = Record<string, Flag<unknown>>;
export type FlagValues<F extends Flags> = { [K in keyof F]: F[K] extends Flag<infer T> ? T : never };

/** A flag that takes a value; `schema` sees the text typed, or undefined when the flag is absent. */
export function option<T>(value: string, help: string, schema: z.ZodType<T, string | undefined>): Flag<T> {
  return { kind: 'string', value, help, schema: schema as z.ZodType<T, string | boolean | undefined> };
}

/** A flag without a value: true when given. */
export function toggle(help: string): Flag<boolean> {
  return { kind: 'boolean', value: '', help, schema: z.boolean().default(false) as z.ZodType<boolean, string | boolean | undefined> };
}

/** A whole number typed as text, at least `min`. */
export const integer = (min: number) =>
  z
    .string()
    .regex(/^[+-]?\d+$/, 'must be an integer')
    .transform(Number)
    .pipe(z.number().min(min, `must be >= ${min}`));

/** A finite number typed as text (1e-3, 0.5). */
export const decimal = () =>
  z
    .string()
    .refine((s) => s.trim() !== '' && Number.isFinite(Number(s)), 'must be a number')
    .transform(Number);

/** Flags that once existed and what replaced them, so an old command line gets a pointer instead of a bare refusal. */
const RETIRED: Record<string, string> = {
  config: '--config was split in two: --arch <name|json> names the architecture, --options <train.json> a training-options file',
  batch: 'use --batch-size',
};

export interface CommandSpec<F extends Flags> {
  name: string;
  /** One line for `rsclip help`. */
  summary: string;
  flags: F;
  /** A single required positional argument (its placeholder and help), for commands that take one. */
  positional?: { value: string; help: string };
  run(flags: FlagValues<F>, positional: string | undefined): Promise<number>;
}

/** Each `rsclip <name>` command lives in `cli/commands/<name>.ts` and default-exports one of these. */
export interface Command {
  name: string;
  summary: string;
  /** One line: the command and its flags, required ones bare. */
  usage(): string;
  /** The usage line, then one line per flag with its help and default. */
  help(): string;
  /** Receives the arguments after the command name; resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

/** What the flag is when absent, for the help text; undefined when it has none or is required. */
function defaultOf(flag: Flag<unknown>): unknown {
  const r = flag.schema.safeParse(undefined);
  return r.success && flag.kind === 'string' ? r.data : undefined;
}

const required = (flag: Flag<unknown>): boolean => !flag.schema.safeParse(undefined).success;

function placeholder(name: string, flag: Flag<unknown>): string {
  return flag.kind === 'boolean' ? `--${name}` : `--${name} ${flag.value}`;
}

export function defineCommand<F extends Flags>(spec: CommandSpec<F>): Command {
  const entries = Object.entries(spec.flags);
  const usage = (): string =>
    [
      spec.name,
      ...(spec.positional ? [spec.positional.value] : []),
      ...entries.filter(([, f]) => required(f)).map(([n, f]) => placeholder(n, f)),
      ...entries.filter(([, f]) => !required(f)).map(([n, f]) => `[${placeholder(n, f)}]`),
    ].join(' ');
  const help = (): string => {
    const rows: [string, string][] = entries.map(([n, f]) => {
      const d = defaultOf(f);
      return [placeholder(n, f), `${f.help}${required(f) ? ' (required)' : d !== undefined ? ` (default ${String(d)})` : ''}`];
    });
    if (spec.positional) rows.unshift([spec.positional.value, `${spec.positional.help} (required)`]);
    const width = Math.max(...rows.map(([l]) => l.length), 0) + 2;
    return [`usage: ${usage()}`, '', spec.summary, '', ...rows.map(([l, h]) => `  ${l.padEnd(width)}${h}`)].join('\n');
  };
  const fail = (message: string): never => {
    throw new UserError(`${message}\nusage: ${usage()}`);
  };

  return {
    name: spec.name,
    summary: spec.summary,
    usage,
    help,
    async run(argv) {
      if (argv.includes('--help') || argv.includes('-h')) {
        console.log(help());
        return 0;
      }
      let parsed: ReturnType<typeof parseArgs>;
      try {
        parsed = parseArgs({
          args: argv,
          options: Object.fromEntries(entries.map(([n, f]) => [n, { type: f.kind }])),
          strict: true,
          allowPositionals: spec.positional !== undefined,
        });
      } catch (e) {
        const unknown = /Unknown option '--([^']+)'/.exec((e as Error).message)?.[1];
        return fail(unknown && RETIRED[unknown] ? `unknown option '--${unknown}': ${RETIRED[unknown]}` : (e as Error).message);
      }
      if (spec.positional && parsed.positionals.length !== 1) {
        fail(`expected one ${spec.positional.value}, got ${parsed.positionals.length ? parsed.positionals.join(' ') : 'none'}`);
      }
      const values: Record<string, unknown> = {};
      for (const [name, flag] of entries) {
        const raw = parsed.values[name] as string | boolean | undefined;
        const r = flag.schema.safeParse(raw);
        if (!r.success) fail(raw === undefined ? `--${name} is required` : `--${name} '${String(raw)}': ${firstIssue(r.error).message}`);
        else values[name] = r.data;
      }
      return spec.run(values as FlagValues<F>, parsed.positionals[0]);
    },
  };
}
