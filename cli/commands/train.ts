import { TrainOptionsSchema, type TrainOptions } from '../../core/train-options.ts';
import { openStore } from '../../core/store.ts';
import type { ExecutionProvider } from '../../worker/engine/options.ts';
import { chooseModel, loadBaseModel } from '../../worker/train/base-model.ts';
import { jsonLinesTo } from '../../worker/train/log.ts';
import { resolveRecipe } from '../../worker/train/recipe.ts';
import { trainAndPublish } from '../../worker/train/run.ts';
import { UserError, type Command } from '../command.ts';
import { createProgress } from '../progress.ts';
import { numberFlag, parseFlags, providersFlag, readOptionsFile, userErrors } from '../flags.ts';

const USAGE =
  'train --shards <dir|s3://...> --model <checkpoint|random:ViT-tiny> --out <dir|s3://...> [--config <name|json>] ' +
  '[--val-shards <dir|s3://...>] [--options train.json] [--epochs N] [--max-steps N] [--batch-size N] [--accumulate N] ' +
  '[--lr X] [--warmup-steps N] [--seed S] [--checkpoint-every N] [--no-augment] [--ep cpu|cuda|webgpu[,...]]';

const command: Command = {
  summary: 'fine-tune a CLIP model on shards (resumes from <out>/checkpoints/latest.json), publish <out>/final/',
  async run(argv) {
    const f = parseFlags(
      argv,
      {
        shards: { type: 'string' },
        'val-shards': { type: 'string' },
        model: { type: 'string' },
        config: { type: 'string' },
        out: { type: 'string' },
        options: { type: 'string' },
        epochs: { type: 'string' },
        'max-steps': { type: 'string' },
        'batch-size': { type: 'string' },
        accumulate: { type: 'string' },
        lr: { type: 'string' },
        'warmup-steps': { type: 'string' },
        seed: { type: 'string' },
        'checkpoint-every': { type: 'string' },
        'no-augment': { type: 'boolean' },
        ep: { type: 'string' },
      },
      USAGE,
    );
    if (!f.shards || !f.model || !f.out) throw new UserError(`--shards, --model and --out are required\nusage: ${USAGE}`);
    const flags: TrainOptions = {
      epochs: numberFlag('epochs', f.epochs, true),
      maxSteps: numberFlag('max-steps', f['max-steps'], true),
      batchSize: numberFlag('batch-size', f['batch-size'], true),
      accumulate: numberFlag('accumulate', f.accumulate, true),
      lr: numberFlag('lr', f.lr, false),
      warmupSteps: numberFlag('warmup-steps', f['warmup-steps'], true),
      seed: numberFlag('seed', f.seed, true),
      checkpointEvery: numberFlag('checkpoint-every', f['checkpoint-every'], true),
      ...(f['no-augment'] ? { augment: { randomResizedCrop: false, dihedral: false } } : {}),
    };
    const merged = { ...(await readOptionsFile(f.options)), ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) };
    const checked = TrainOptionsSchema.safeParse(merged);
    if (!checked.success) {
      const issue = checked.error.issues[0]!;
      throw new UserError(`option ${issue.path.join('.')}: ${issue.message}`);
    }
    const options = checked.data;
    return userErrors(() =>
      train({ shards: f.shards!, valShards: f['val-shards'], model: f.model!, config: f.config, out: f.out!, providers: providersFlag(f.ep) }, options),
    );
  },
};

interface TrainArgs {
  shards: string;
  valShards?: string;
  model: string;
  config?: string;
  out: string;
  providers?: ExecutionProvider[];
}

async function train(a: TrainArgs, options: TrainOptions): Promise<number> {
  const model = chooseModel(a.model, a.config ?? options.model, a.config ? '--config' : 'train.json "model"');
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

export default command;
