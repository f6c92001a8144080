import { SPLITS, type Split } from '../../core/shard-format.ts';
import { openStore } from '../../core/store.ts';
import { indexShards } from '../../worker/data/shard-stream.ts';
import { chooseModel, loadBaseModel } from '../../worker/train/base-model.ts';
import { evaluateSplit } from '../../worker/train/evaluate.ts';
import { evalSplitOf } from '../../worker/train/loop.ts';
import { RECALL_KS } from '../../worker/train/metrics.ts';
import { openEncoders } from '../../worker/train/onnx-encoder.ts';
import { z } from 'zod';
import { defineCommand, option, UserError } from '../command.ts';
import { chooseEp, FLAGS, userErrors } from '../flags.ts';

export default defineCommand({
  name: 'eval',
  summary: 'retrieval recall (R@1/5/10, mR) and zero-shot accuracy of a model on a split of some shards',
  flags: {
    model: FLAGS.model,
    shards: FLAGS.shards,
    arch: FLAGS.arch,
    split: option(`<${SPLITS.join('|')}>`, 'the split to evaluate (default: val, else test, else train)', z.enum(SPLITS).optional()),
    ep: FLAGS.ep,
    json: FLAGS.json,
  },
  async run(f) {
    const ep = await chooseEp(f.ep);
    return userErrors(async () => {
      const model = chooseModel(f.model, f.arch, '--arch');
      const params = await loadBaseModel(f.model, model, 0);
      const store = openStore(f.shards);
      const index = await indexShards(store);
      const split: Split = f.split ?? evalSplitOf(index);
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
});
