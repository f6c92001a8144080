import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkDataset, type CheckOptions } from '../../core/dataset/check.ts';
import type { ValidationReport } from '../../core/dataset/types.ts';
import { FsStore, openStore, type ObjectStore } from '../../core/store.ts';
import { defineCommand, UserError } from '../command.ts';
import { DATA, datasetNameOf, FLAGS } from '../flags.ts';

/** Store failures (no such bucket, no credentials, unreadable folder) are the user's to fix: one line each. */
export async function storeErrors<T>(location: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const err = e as Error & { $metadata?: unknown; code?: string };
    if (err.$metadata !== undefined || err.code === 'EACCES' || err.code === 'ENOTDIR' || err.name === 'CredentialsProviderError') {
      throw new UserError(`cannot read ${location}: ${err.name}: ${err.message.split('\n')[0]}`);
    }
    throw e;
  }
}

export function printReport(report: ValidationReport): void {
  const c = report.counts;
  console.log(`${report.valid ? 'valid' : 'INVALID'}: ${report.summary}`);
  console.log(
    `  ${c.rows} rows (${c.badRows} bad), ${c.images} images; splits of good rows: train ${c.splits.train}, val ${c.splits.val}, test ${c.splits.test}; ` +
      `model ${report.model} (${report.imageSize}px); policy ${report.policy}`,
  );
  for (const p of report.problems) console.log(`  ${p.file}${p.line !== undefined ? `:${p.line}` : ''}  ${p.field}: ${p.reason}`);
  if (report.problemsOmitted) console.log(`  ... and ${report.problemsOmitted} more problems`);
}

/** The pipeline's Validate, Shard and Collect steps on `location`, shards and summaries written to `out`. */
export async function checkLocation(location: string, out: ObjectStore, opts: CheckOptions = {}): Promise<Awaited<ReturnType<typeof checkDataset>>> {
  const store = openStore(location);
  return storeErrors(location, () => checkDataset(store, datasetNameOf(location), out, opts));
}

export default defineCommand({
  name: 'validate',
  summary: 'check a dataset folder (captions.csv, every image, train.json) as the pipeline does and print its validation report; exit 1 if invalid',
  flags: { data: DATA, json: FLAGS.json },
  async run(f) {
    // Every image is decoded as the Shard step would, into shards that are not kept.
    const scratch = await mkdtemp(join(tmpdir(), 'rsclip-validate-'));
    try {
      const { report } = await checkLocation(f.data, new FsStore(scratch), { always: true, discardShards: true });
      if (f.json) console.log(JSON.stringify(report, null, 1));
      else printReport(report);
      return report.valid ? 0 : 1;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  },
});
