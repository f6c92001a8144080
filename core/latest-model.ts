import { TrainInputError } from './run-errors.ts';
import { modelLatestKey } from './s3-layout.ts';
import type { ObjectStore } from './store.ts';
import type { TrainOptions } from './train-options.ts';

/**
 * The model models/<dataset>/latest.json names, as a URI inside `bucket`, with the config name its run recorded
 * (a published model.safetensors has no config name in its file name). What train.json's `init: latest` means:
 * Validate resolves it once per run (resolveLatestInit), the worker when it is given `latest` itself (the CLI).
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

/** `options` with `init: latest` made the model latest.json names now, with its run's config unless `model` is set. */
export async function resolveLatestInit(options: TrainOptions, dataset: string, bucket: ObjectStore): Promise<TrainOptions> {
  const latest = await latestModel(bucket, dataset);
  const model = options.model ?? latest.modelName;
  return { ...options, init: latest.uri, ...(model ? { model } : {}) };
}
