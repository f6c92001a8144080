import { DEFAULT_SHARD_SIZE, planShards } from '../../core/dataset.ts';
import { buildShard } from '../../core/dataset/build-shard.ts';
import { ImageError } from '../../core/preprocess.ts';
import { shardName } from '../../core/s3-layout.ts';
import { openStore } from '../../core/store.ts';
import { UserError, type Command } from '../command.ts';
import { createProgress } from '../progress.ts';
import { numberFlag, parseFlags } from '../flags.ts';
import { printReport, storeErrors, validateLocation } from './validate.ts';

const USAGE = 'shard --data <dir|s3://bucket/datasets/<name>> --out <dir|s3://...> [--size N]';
const VALIDATION_FILE = 'validation.json';

const command: Command = {
  summary: 'validate a dataset and write its .rsshard files (the Shard Lambda code path) to a folder or S3 prefix',
  async run(argv) {
    const f = parseFlags(argv, { data: { type: 'string' }, out: { type: 'string' }, size: { type: 'string' } }, USAGE);
    if (!f.data || !f.out) throw new UserError(`--data and --out are required\nusage: ${USAGE}`);
    const size = numberFlag('size', f.size, true);
    if (size !== undefined && (size < 1 || size > 1024)) throw new UserError(`--size must be 1..1024, got ${size}`);
    const { store, result } = await validateLocation(f.data);
    const { report, rows, options } = result;
    const out = openStore(f.out);
    await storeErrors(f.out, () => out.put(VALIDATION_FILE, `${JSON.stringify(report, null, 1)}\n`));
    if (!report.valid) {
      printReport(report);
      return 1;
    }
    // Default: the model's input size from train.json (224 for the default ViT-B-32).
    const imageSize = size ?? report.imageSize;
    const plan = planShards(rows, options.shardSize ?? DEFAULT_SHARD_SIZE);
    const progress = createProgress('shard', rows.length);
    let images = 0;
    for (const [i, shardRows] of plan.entries()) {
      const { bytes, sha256, images: n } = await storeErrors(f.data, () =>
        buildShard(store, shardRows, { imageSize, bands: options.bands }).catch((e: unknown) => {
          throw e instanceof ImageError ? new UserError(e.message) : e;
        }),
      );
      await storeErrors(f.out, () => out.put(shardName(i), bytes));
      images += n;
      progress.tick(shardRows.length, { shard: shardName(i), sha256: sha256.slice(0, 12) });
    }
    progress.done();
    console.log(`wrote ${plan.length} shards (${rows.length} rows, ${images} images, ${imageSize}px) and ${VALIDATION_FILE} to ${out.uri}`);
    return 0;
  },
};
export default command;
