import { SPLITS, type Split } from '../../core/shard-format.ts';
import { openStore } from '../../core/store.ts';
import { indexShards } from '../../worker/data/shard-stream.ts';
import { chooseModel, loadBaseModel } from '../../worker/train/base-model.ts';
import { evaluateSplit } from '../../worker/train/evaluate.ts';
import { evalSplitOf } from '../../worker/train/loop.ts';
import { RECALL_KS } from '../../worker/train/metrics.ts';
import { openEncoders } from '../../worker/train/onnx-encoder.ts';
import { UserError, type Command } from '../command.ts';
import { epFlag, parseFlags, userErrors } from '../flags.ts';

const USAGE = 'eval --model <model.safetensors|.pt|random:NAME> --shards <dir|s3://...> [--config <name|json>] [--split val|test|train] [--ep cpu|cuda|webgpu] [--json]';

const command: Command = {
  summary: 'retrieval recall (R@1/5/10, mR) and zero-shot accuracy of a model on a split of some shards',
  async run(argv) {
    const f = parseFlags(
      argv,
      { model: { type: 'string' }, config: { type: 'string' }, shards: { type: 'string' }, split: { type: 'string' }, ep: { type: 'string' }, json: { type: 'boolean' } },
      USAGE,
    );
    if (!f.model || !f.shards) throw new UserError(`--model and --shards are required\nusage: ${USAGE}`);
    if (f.split !== undefined && !SPLITS.includes(f.split as Split)) throw new UserError(`--split must be one of ${SPLITS.join(', ')}`);
    const ep = await epFlag(f.ep);
    return userErrors(async () => {
      const model = chooseModel(f.model!, f.config, '--config');
      const params = await loadBaseModel(f.model!, model, 0);
      const store = openStore(f.shards!);
      const index = await indexShards(store);
      const split = (f.split as Split | undefined) ?? evalSplitOf(index);
      if (index.totals[split] === 0) throw new UserError(`${f.shards} has no ${split}-split rows`);
      const encoders = await openEncoders(model.config, params, { ep });
      try {
        const m = (await evaluateSplit(encoders, store, index, split))!;
        if (f.json) console.log(JSON.stringify({ model: f.model, config: model.name, split, ...m }));
        else {
          console.log(`${f.model} (${model.name}) on the ${split} split: ${m.images} images, ${m.captions} captions`);
          console.log(`  image->text R@${RECALL_KS.join('/')}: ${RECALL_KS.map((k) => m[`image_to_text_R@${k}`].toFixed(2)).join(' / ')}`);
          console.log(`  text->image R@${RECALL_KS.join('/')}: ${RECALL_KS.map((k) => m[`text_to_image_R@${k}`].toFixed(2)).join(' / ')}`);
          console.log(`  mean recall: ${m.mean_recall.toFixed(2)}`);
          if (m.zeroshot_top1 !== undefined) console.log(`  zero-shot top-1: ${m.zeroshot_top1.toFixed(2)}`);
        }
      } finally {
        await encoders.close();
      }
      return 0;
    });
  },
};

export default command;
