import { TrainOptionsSchema, type TrainOptions } from '../../core/train-options.ts';
import { openStore } from '../../core/store.ts';
import type { ExecutionProvider } from '../../worker/engine/options.ts';
import { chooseModel, loadBaseModel } from '../../worker/train/base-model.ts';
import { jsonLinesTo } from '../../worker/train/log.ts';
import { resolveRecipe } from '../../worker/train/recipe.ts';
import { trainAndPublish } from '../../worker/train/run.ts';
import { z } from 'zod';
import { issueLine } from '../../core/schema-issue.ts';
import { decimal, defineCommand, integer, option, toggle, UserError } from '../command.ts';
import { createProgress } from '../progress.ts';
import { FLAGS, providersOrEnv, readOptionsFile, userErrors } from '../flags.ts';

/** Flags that set one train.json option each (the kebab-case of its key); the options schema checks the merged result. */
const OPTION_FLAGS = {
  epochs: option('N', 'passes over the train split', integer(1).optional()),
  'max-steps': option('N', 'stop after N optimizer steps', integer(1).optional()),
  'batch-size': option('N', 'rows per batch', integer(1).optional()),
  accumulate: option('N', 'micro-batches per optimizer step (one contrastive batch of N x batch-size rows)', integer(1).optional()),
  lr: option('X', 'peak learning rate', decimal().optional()),
  'warmup-steps': option('N', 'linear warm-up steps before the cosine decay', integer(0).optional()),
  seed: option('N', 'seed of initialisation, shuffling and augmentation', integer(0).optional()),
  'checkpoint-every': option('N', 'steps between checkpoints', integer(1).optional()),
};
const camel = (flag: string): string => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export default defineCommand({
  name: 'train',
  summary: 'fine-tune a CLIP model on shards (resumes from <out>/checkpoints/latest.json), publish <out>/final/',
  flags: {
    shards: FLAGS.shards,
    model: FLAGS.model,
    out: option('<dir|s3://...>', 'where checkpoints/ and final/ go', z.string()),
    arch: FLAGS.arch,
    'val-shards': option('<dir|s3://...>', 'shards to evaluate on (default: the val split of --shards)', z.string().optional()),
    options: FLAGS.options,
    ...OPTION_FLAGS,
    'no-augment': toggle('no random resized crop or dihedral flips'),
    ep: FLAGS.ep,
  },
  async run(f) {
    const flags: TrainOptions = {
      ...Object.fromEntries(Object.keys(OPTION_FLAGS).map((k) => [camel(k), f[k as keyof typeof OPTION_FLAGS]]).filter(([, v]) => v !== undefined)),
      ...(f['no-augment'] ? { augment: { randomResizedCrop: false, dihedral: false } } : {}),
    };
    const checked = TrainOptionsSchema.safeParse({ ...(await readOptionsFile(f.options)), ...flags });
    if (!checked.success) throw new UserError(`option ${issueLine(checked.error)}`);
    const options = checked.data;
    return userErrors(() =>
      train({ shards: f.shards, valShards: f['val-shards'], model: f.model, arch: f.arch, out: f.out, providers: providersOrEnv(f.ep) }, options),
    );
  },
});

interface TrainArgs {
  shards: string;
  valShards?: string;
  model: string;
  arch?: string;
  out: string;
  providers?: ExecutionProvider[];
}

async function train(a: TrainArgs, options: TrainOptions): Promise<number> {
  const model = chooseModel(a.model, a.arch ?? options.model, a.arch ? '--arch' : 'train.json "model"');
  const recipe = resolveRecipe(model.config, options);
  const published = await trainAndPublish(
    {
      shards: openStore(a.shards),
      valShards: a.valShards ? openStore(a.valShards) : undefined,
      out: openStore(a.out),
      config: model.config,
      recipe,
      loadBase: () => loadBaseModel(a.model, model, recipe.seed, { ignoreUnexpectedKeys: options.ignoreUnexpectedKeys }),
      providers: a.providers,
      log: jsonLinesTo(process.stderr),
      progress: process.stderr.isTTY ? (label, total) => createProgress(label, total) : undefined,
    },
    { dataset: a.shards, baseModel: a.model, modelName: model.name },
  );
  const m = published.metrics;
  console.log(
    JSON.stringify({ steps: m.steps, final_model: published.model, sha256: published.sha256, before: m.before.mean_recall, after: m.after.mean_recall }),
  );
  return 0;
}
