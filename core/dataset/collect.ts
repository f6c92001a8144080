import { shardSummaryName } from '../s3-layout.ts';
import { SHARD_INDEX_FILE, SHARD_INDEX_VERSION, type ShardIndexFile } from '../shard-index.ts';
import type { ObjectStore } from '../store.ts';
import { mapLimit } from './map-limit.ts';
import { ProblemList, summarize } from './problems.ts';
import type { ShardSummary, ValidationReport } from './types.ts';
import { isValid, passedSummary } from './validate.ts';

/** Summaries read at once: a 20,000-shard run is read in seconds without holding a connection per shard. */
const READ_CONCURRENCY = 32;

/**
 * After the Shard step: every item's summary (shard-<n>.json) merged into the validation report, the policy
 * applied again with the images' problems counted, and when the dataset still passes, the index the worker plans
 * from. Memory holds one summary's problems at a time beyond the report's first MAX_REPORTED_PROBLEMS.
 */
export async function collectShards(shards: ObjectStore, report: ValidationReport, nShards: number): Promise<{ report: ValidationReport; index?: ShardIndexFile }> {
  const problems = new ProblemList();
  problems.addAll(report.problems);
  problems.total += report.problemsOmitted;
  const counts = structuredClone(report.counts);
  const entries: ShardIndexFile['shards'] = [];
  const labels = { train: new Set<string>(), val: new Set<string>(), test: new Set<string>() };
  const summaries = await mapLimit(Array.from({ length: nShards }, (_, i) => i), READ_CONCURRENCY, async (i) => {
    const bytes = await shards.tryGet(shardSummaryName(i));
    if (!bytes) throw new Error(`${shards.uri}/${shardSummaryName(i)} is missing: the Shard step did not finish item ${i}`);
    const s = JSON.parse(Buffer.from(bytes).toString('utf8')) as ShardSummary;
    problems.addAll(s.problems);
    problems.total += s.badRows - s.problems.length;
    // Keep what the index needs, not the problems.
    return { shard: s.shard, split: s.split, name: s.name, imageSize: s.imageSize, rows: s.rows, images: s.images, badRows: s.badRows, badImages: s.badImages, labels: s.labels };
  });
  for (const s of summaries) {
    counts.goodRows -= s.badRows;
    counts.badRows += s.badRows;
    counts.goodImages -= s.badImages;
    counts.splits[s.split] -= s.badRows;
    for (const l of s.labels) labels[s.split].add(l);
    if (s.name) entries.push({ name: s.name, split: s.split, rows: s.rows, images: s.images });
  }
  const valid = isValid(problems.fatal, counts, report.policy, report.maxBadFraction);
  const sorted = problems.sorted();
  const merged: ValidationReport = {
    ...report,
    valid,
    checked: 'images',
    summary: valid ? passedSummary(counts, report.policy) : summarize(sorted.problems, problems.total, counts.badRows, counts.rows),
    counts,
    ...sorted,
  };
  if (!valid) return { report: merged };
  const index: ShardIndexFile = {
    version: SHARD_INDEX_VERSION,
    imageSize: summaries[0]?.imageSize ?? report.imageSize,
    shards: entries,
    labels: { train: [...labels.train].sort(), val: [...labels.val].sort(), test: [...labels.test].sort() },
  };
  await shards.put(SHARD_INDEX_FILE, JSON.stringify(index));
  return { report: merged, index };
}
