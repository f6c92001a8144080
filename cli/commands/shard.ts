import { openStore } from '../../core/store.ts';
import { UserError, type Command } from '../command.ts';
import { createProgress } from '../progress.ts';
import { numberFlag, parseFlags } from '../flags.ts';
import { checkLocation, printReport, storeErrors } from './validate.ts';

const USAGE = 'shard --data <dir|s3://bucket/datasets/<name>> --out <dir|s3://...> [--size N]';
const VALIDATION_FILE = 'validation.json';

const command: Command = {
  summary: 'validate a dataset and write its .rsshard files and index.json (the Validate, Shard and Collect code path) to a folder or S3 prefix',
  async run(argv) {
    const f = parseFlags(argv, { data: { type: 'string' }, out: { type: 'string' }, size: { type: 'string' } }, USAGE);
    if (!f.data || !f.out) throw new UserError(`--data and --out are required\nusage: ${USAGE}`);
    const size = numberFlag('size', f.size, true);
    if (size !== undefined && (size < 1 || size > 1024)) throw new UserError(`--size must be 1..1024, got ${size}`);
    const out = openStore(f.out);
    let progress: ReturnType<typeof createProgress> | undefined;
    // Default image size: the model's input size from train.json (224 for the default ViT-B-32).
    const { report, index } = await storeErrors(f.out, () =>
      checkLocation(f.data!, out, {
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
};
export default command;
