import { basename } from 'node:path';
import { modelLatestKey } from '../../core/s3-layout.ts';
import type { ObjectStore } from '../../core/store.ts';
import { CheckpointError } from '../checkpoint/errors.ts';
import { loadStateDictFile } from '../checkpoint/load.ts';
import type { ClipModelConfig } from '../../core/model-config/config.ts';
import { loadModelConfig, modelConfigNames } from '../../core/model-config/config.ts';
import { initParams } from '../models/init.ts';
import type { StateDict } from '../engine/tensor.ts';
import { TrainInputError } from '../../core/run-errors.ts';

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
}

/**
 * The model config: an explicit one (CLI --config, train.json "model"), else the one `random:<name>` names,
 * else the longest known config name inside the checkpoint's file name (RemoteCLIP-ViT-B-32.pt -> ViT-B-32),
 * else ViT-B-32, RemoteCLIP's default.
 */
export function chooseModel(base: string, explicit?: string): ModelChoice {
  let name = explicit;
  if (!name && base.startsWith(RANDOM_PREFIX)) name = base.slice(RANDOM_PREFIX.length);
  if (!name) {
    const file = basename(base);
    name = modelConfigNames()
      .filter((n) => file.includes(n))
      .sort((a, b) => b.length - a.length)[0];
  }
  name ??= 'ViT-B-32';
  try {
    return { name, config: loadModelConfig(name) };
  } catch (e) {
    throw new TrainInputError((e as Error).message);
  }
}

/**
 * The model models/<dataset>/latest.json names, as a URI inside `bucket`, with the config name its run recorded
 * (a published model.safetensors has no config name in its file name).
 */
export async function latestModel(bucket: ObjectStore, dataset: string): Promise<{ uri: string; modelName?: string }> {
  const key = modelLatestKey(dataset);
  const bytes = await bucket.tryGet(key);
  if (!bytes) throw new TrainInputError(`init "latest": ${bucket.uri.replace(/\/$/, '')}/${key} does not exist (no model published for ${dataset} yet)`);
  const latest = JSON.parse(Buffer.from(bytes).toString('utf8')) as { model?: unknown; metrics?: { model?: unknown } };
  if (typeof latest.model !== 'string' || !latest.model) throw new TrainInputError(`${key}: has no "model" key`);
  const modelName = typeof latest.metrics?.model === 'string' ? latest.metrics.model : undefined;
  return { uri: `${bucket.uri.replace(/\/$/, '')}/${latest.model}`, modelName };
}

export async function loadBaseModel(base: string, config: ClipModelConfig, seed: number): Promise<StateDict> {
  if (base.startsWith(RANDOM_PREFIX)) return initParams(config, seed);
  try {
    return await loadStateDictFile(base);
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    throw new TrainInputError(e.kind === 'missing' ? `base model not found: ${base}` : e.message);
  }
}
