import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { z } from 'zod';
import { parseTrainOptions, type TrainOptions } from '../core/train-options.ts';
import type { ClipModelConfig } from '../core/model-config/config.ts';
import type { ExecutionProvider } from '../worker/engine/options.ts';
import { loadModelConfig } from '../core/model-config/config.ts';
import { TrainInputError } from '../core/run-errors.ts';
import { datasetNameProblem } from '../core/s3-layout.ts';
import { chooseProvider } from '../worker/engine/session.ts';
import { parseProviders, providersProblem } from '../worker/train/run.ts';
import { integer, option, toggle, UserError } from './command.ts';

/** A comma-separated provider preference list. */
const providerList = z.string().transform((v, ctx) => {
  const problem = providersProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
  return v.split(',').map((p) => p.trim()) as ExecutionProvider[];
});

/** A dataset: a folder, or its prefix in S3. */
export const DATA = option('<dir|s3://bucket/datasets/<name>>', 'the dataset: captions.csv, the images it names, optionally train.json', z.string());

/** A checkpoint: a local or s3:// .pt/.safetensors, or `random:<config>`. */
export const MODEL_HELP = 'base checkpoint: a .pt/.safetensors path or s3:// URI, or random:<config> for random weights';

const ARCH = 'model architecture: an open_clip config name (ViT-B-32, RN50, ...) or a config JSON path';

/**
 * The flags several commands share, declared once so that a name means one thing everywhere: --arch is an
 * architecture, --options a train.json-style file, --model a checkpoint, --batch-size rows per batch.
 */
export const FLAGS = {
  arch: option('<name|json>', ARCH, z.string().optional()),
  archRequired: option('<name|json>', ARCH, z.string()),
  options: option('<train.json>', 'a train.json-style options file (its keys win over the dataset\'s own)', z.string().optional()),
  ep: option('<cpu|cuda|webgpu[,...]>', 'execution providers in order of preference (default: RSCLIP_EP, else cpu)', providerList.optional()),
  json: toggle('print the result as JSON'),
  model: option('<checkpoint|random:CONFIG>', MODEL_HELP, z.string()),
  shards: option('<dir|s3://...>', 'a folder or S3 prefix of .rsshard files with their index.json', z.string()),
  threads: option('N', 'ONNX Runtime intra-op threads', integer(1).optional()),
  batchSize: (fallback: number) => option('N', 'rows per batch', integer(1).default(fallback)),
} as const;

/**
 * A dataset's name in the bucket: `explicit` (--name), else the last segment of its folder or S3 prefix, the same
 * for `validate`, `shard` and `run`; one the bucket layout refuses is a one-line user error.
 */
export function datasetNameOf(location: string, explicit?: string): string {
  const trimmed = location.replace(/[/\\]+$/, '');
  const name = explicit ?? (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? (trimmed.split('/').pop() ?? '') : basename(resolve(trimmed)));
  const problem = datasetNameProblem(name);
  if (problem) throw new UserError(explicit !== undefined ? `--name '${name}' ${problem}` : `the dataset name '${name}' (from ${location}) ${problem}: pass --name`);
  return name;
}

/** The config --arch names; a bad one is a one-line user error. */
export function archConfig(v: string): ClipModelConfig {
  try {
    return loadModelConfig(v);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}

/** --ep's value, else RSCLIP_EP (set by the worker images): providers in order of preference; undefined for the default (cpu). */
export function providersOrEnv(flag: ExecutionProvider[] | undefined): ExecutionProvider[] | undefined {
  try {
    return flag ?? parseProviders(process.env.RSCLIP_EP, 'RSCLIP_EP');
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}

/** The first of providersOrEnv's providers that loads here; undefined for the default (cpu). */
export async function chooseEp(flag: ExecutionProvider[] | undefined): Promise<ExecutionProvider | undefined> {
  const providers = providersOrEnv(flag);
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
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UserError(`${path}: ${(e as Error).message}`);
  }
  const parsed = parseTrainOptions(bytes);
  if ('options' in parsed) return parsed.options;
  throw new UserError(`${path}: ${parsed.field === 'file' ? '' : `${parsed.field}: `}${parsed.reason}`);
}

