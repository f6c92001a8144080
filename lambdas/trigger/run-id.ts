import { createHash } from 'node:crypto';
import { datasetOfCaptionsKey } from '../../core/s3-layout.ts';

export interface RunStart {
  /** Step Functions execution name; equal to runId, so a repeated event maps to the same execution. */
  name: string;
  /** versionId: the captions.csv version the run reads (absent in an unversioned bucket). */
  input: { bucket: string; key: string; runId: string; versionId?: string };
}

/**
 * One run per content of a captions.csv: the execution name hashes bucket, key and what identifies the bytes
 * (handler.ts uploadContentId; a schedule tick adds its time), so EventBridge's at-least-once duplicates and
 * re-uploads of the same file collapse into one execution while a changed upload starts a new one. undefined
 * for keys that are not a dataset's captions.csv.
 */
export function runFor(bucket: string, key: string, content: string, versionId?: string): RunStart | undefined {
  const dataset = datasetOfCaptionsKey(key);
  if (dataset === undefined) return undefined;
  const hash = createHash('sha256').update(`${bucket}\n${key}\n${content}`).digest('hex').slice(0, 12);
  // Execution names allow [A-Za-z0-9_-] up to 80 characters, and the run id is also the Batch job name, which must
  // start with a letter or digit; the hash keeps datasets whose names map to the same prefix apart.
  const prefix = dataset.replace(/[^A-Za-z0-9_-]/g, '_').replace(/^[_-]+/, '').slice(0, 64) || 'dataset';
  const runId = `${prefix}-${hash}`;
  return { name: runId, input: { bucket, key, runId, ...(versionId ? { versionId } : {}) } };
}
