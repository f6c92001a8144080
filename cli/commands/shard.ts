import { z } from 'zod';
import { openStore } from '../../core/store.ts';
import { defineCommand, integer, option } from '../command.ts';
import { createProgress } from '../progress.ts';
import { DATA } from '../flags.ts';
import { checkLocation, printReport, storeErrors } from './validate.ts';

const VALIDATION_FILE = 'validation.json';

export default defineCommand({
  name: 'shard',
  summary: 'validate a dataset and write its .rsshard files and index.json (the Validate, Shard and Collect code path) to a folder or S3 prefix',
  flags: {
    data: DATA,
    out: option('<dir|s3://...>', 'where the shards, index.json and validation.json go', z.string()),
    // Default image size: the model's input size from train.json (224 for the default ViT-B-32).
    size: option('N', "image side in pixels (default: the model's input size)", integer(1).pipe(z.number().max(1024, 'must be <= 1024')).optional()),
  },
  async run(f) {
    const size = f.size;
    const out = openStore(f.out);
    let progress: ReturnType<typeof createProgress> | undefined;
    const { report, index } = await storeErrors(f.out, () =>
      checkLocation(f.data, out, {
        imageSize: size,
        onPlanned: (rows) => (progress = createProgress('shard', rows)),
        onShard: (s) => {
          progress?.tick(s.rows + s.badRows, { shard: s.name ?? `#${s.shard}`, ...(s.sha256 ? { sha256: s.sha256.slice(0, 12) } : {}) });
        },
      }),
    );
    progress?.done();
    await storeErrors(f.out, () => out.put(VALIDATION_FILE, `${JSON.stringify(report, null, 1)}\n`));
    if (!report.valid || !index) {
      printReport(report);
      return 1;
    }
    const rows = index.shards.reduce((n, s) => n + s.rows, 0);
    const images = index.shards.reduce((n, s) => n + s.images, 0);
    console.log(`wrote ${index.shards.length} shards (${rows} rows, ${images} images, ${index.imageSize}px), index.json and ${VALIDATION_FILE} to ${out.uri}`);
    return 0;
  },
});
