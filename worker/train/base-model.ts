import { basename } from 'node:path';
import { CheckpointError } from '../../core/tensors/errors.ts';
import { loadStateDictFile } from '../checkpoint/load.ts';
import { matchStateDict } from '../checkpoint/match.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { loadModelConfig, modelConfigNames } from '../../core/model-config/config.ts';
import { clipBuffers, clipParams } from '../models/clip.ts';
import { initParams } from '../models/init.ts';
import type { StateDict } from '../../core/tensors/tensor.ts';
import { TrainInputError } from '../../core/run-errors.ts';
import { jsonLinesTo, type Logger } from './log.ts';

/**
 * Where a run's starting weights come from: `random:<config>` (open_clip's random init, for tests and demos),
 * a checkpoint at an s3:// URI or a local path (RemoteCLIP/open_clip .pt or .safetensors), or `latest`: the
 * model models/<dataset>/latest.json points at.
 */
export const RANDOM_PREFIX = 'random:';
export const LATEST = 'latest';

export interface ModelChoice {
  /** Config name (or path) for loadModelConfig. */
  name: string;
  config: ClipModelConfig;
  /** How the config was chosen, for messages: `from the file name "RemoteCLIP-RN50.pt"`, `from random:ViT-tiny`, ... */
  how: string;
}

/**
 * The model config: an explicit one (CLI --config, train.json "model"), else the one `random:<name>` names,
 * else the longest known config name inside the checkpoint's file name (RemoteCLIP-ViT-B-32.pt -> ViT-B-32),
 * else ViT-B-32, RemoteCLIP's default.
 */
export function chooseModel(base: string, explicit?: string, explicitFrom = '--config / train.json "model"'): ModelChoice {
  let name = explicit;
  let how = `named by ${explicitFrom}`;
  if (!name && base.startsWith(RANDOM_PREFIX)) {
    name = base.slice(RANDOM_PREFIX.length);
    how = `from ${base}`;
  }
  if (!name) {
    const file = basename(base);
    name = modelConfigNames()
      .filter((n) => file.includes(n))
      .sort((a, b) => b.length - a.length)[0];
    how = `from the file name "${file}"`;
  }
  if (!name) {
    name = 'ViT-B-32';
    how = 'the default: no config named (--config / train.json "model") and none in the file name';
  }
  try {
    return { name, config: loadModelConfig(name), how };
  } catch (e) {
    throw new TrainInputError((e as Error).message);
  }
}

export interface LoadBaseOptions {
  /** train.json `ignoreUnexpectedKeys`: load without the keys the config does not declare, and log them. */
  ignoreUnexpectedKeys?: boolean;
  /** Where the ignored keys are reported (a `checkpoint-keys-ignored` event); JSON lines on stderr by default. */
  log?: Logger;
}

/** Ignored keys named in the log event; the count covers all of them. */
const LOGGED_KEYS = 50;

/**
 * The starting weights for `model`: random ones for `random:<config>`, else the checkpoint's state dict, checked as
 * open_clip's strict load_state_dict checks it (worker/checkpoint/match.ts): a key the config does not declare,
 * one it declares that the file lacks, or another shape is a CheckpointMismatchError naming the file, the keys and
 * how the config was chosen. Only the config's entries are returned.
 */
export async function loadBaseModel(base: string, model: ModelChoice | ClipModelConfig, seed: number, opts: LoadBaseOptions = {}): Promise<StateDict> {
  const choice: ModelChoice = 'config' in model ? model : { name: 'given', config: model, how: 'given by the caller' };
  const config = choice.config;
  if (base.startsWith(RANDOM_PREFIX)) return initParams(config, seed);
  let dict: StateDict;
  try {
    dict = await loadStateDictFile(base);
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    throw new TrainInputError(e.kind === 'missing' ? `base model not found: ${base}` : e.message);
  }
  const { dict: matched, ignored } = matchStateDict(dict, [...clipParams(config), ...clipBuffers(config)], {
    source: base,
    config: 'config' in model ? `config ${choice.name} (${choice.how})` : 'the model config',
    ignoreUnexpectedKeys: opts.ignoreUnexpectedKeys,
  });
  if (ignored.length) {
    (opts.log ?? jsonLinesTo(process.stderr))({
      event: 'checkpoint-keys-ignored',
      checkpoint: base,
      config: choice.name,
      count: ignored.length,
      keys: ignored.slice(0, LOGGED_KEYS),
    });
  }
  return matched;
}
