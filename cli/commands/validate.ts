import { validateDataset, type ValidationReport } from '../../core/dataset.ts';
import { openStore, type ObjectStore } from '../../core/store.ts';
import { UserError, type Command } from '../command.ts';
import { parseFlags } from '../flags.ts';

const USAGE = 'validate --data <dir|s3://bucket/datasets/<name>> [--json]';

/** The dataset's name: the last segment of its folder or prefix. */
export function datasetName(location: string): string {
  return location.replace(/\/+$/, '').split(/[/\\]/).pop() || 'dataset';
}

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

export async function validateLocation(location: string): Promise<{ store: ObjectStore; result: Awaited<ReturnType<typeof validateDataset>> }> {
  const store = openStore(location);
  return { store, result: await storeErrors(location, () => validateDataset(store, datasetName(location))) };
}

const command: Command = {
  summary: 'check a dataset folder (captions.csv, images, train.json) and print its validation report; exit 1 if invalid',
  async run(argv) {
    const f = parseFlags(argv, { data: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
    if (!f.data) throw new UserError(`--data is required\nusage: ${USAGE}`);
    const { result } = await validateLocation(f.data);
    if (f.json) console.log(JSON.stringify(result.report, null, 1));
    else printReport(result.report);
    return result.report.valid ? 0 : 1;
  },
};
export default command;
