import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { TrainOptionsSchema, type TrainOptions } from '../core/train-options.ts';
import type { ClipModelConfig } from '../core/model-config/config.ts';
import type { ExecutionProvider } from '../worker/engine/options.ts';
import { loadModelConfig } from '../core/model-config/config.ts';
import { TrainInputError } from '../core/run-errors.ts';
import { chooseProvider } from '../worker/engine/session.ts';
import { parseProviders } from '../worker/train/run.ts';
import { UserError } from './command.ts';

/** Strict flag parsing shared by every command: an unknown or malformed flag is a one-line error with the usage. */
export function parseFlags<T extends Record<string, { type: 'string' | 'boolean' }>>(argv: string[], options: T, usage: string) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UserError(`${(e as Error).message}\nusage: ${usage}`);
  }
}

export function numberFlag(name: string, v: string | undefined, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new UserError(`--${name} must be ${integer ? 'an integer' : 'a number'}, got '${v}'`);
  return n;
}

/** An open_clip config name or JSON path (--arch); a bad one is a one-line user error. */
export function modelConfigFlag(v: string): ClipModelConfig {
  try {
    return loadModelConfig(v);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}

/** --ep, else RSCLIP_EP (set by the worker images): providers in order of preference; undefined for the default (cpu). */
export function providersFlag(v: string | undefined): ExecutionProvider[] | undefined {
  try {
    return v !== undefined ? parseProviders(v, '--ep') : parseProviders(process.env.RSCLIP_EP, 'RSCLIP_EP');
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}

/** The first provider of providersFlag that loads here; undefined for the default (cpu). */
export async function epFlag(v: string | undefined): Promise<ExecutionProvider | undefined> {
  const providers = providersFlag(v);
  if (!providers) return undefined;
  try {
    return (await chooseProvider(providers)).ep;
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}

/** Input problems found while training (TrainInputError) become one-line user errors. */
export async function userErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof TrainInputError) throw new UserError(e.message);
    throw e;
  }
}

/** A train.json-style options file; `{}` when absent and not required. */
export async function readOptionsFile(path: string | undefined, required = true): Promise<TrainOptions> {
  if (!path) return {};
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UserError(`${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not JSON: ${(e as Error).message}`);
  }
  const parsed = TrainOptionsSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UserError(`${path}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}
