import { createHash } from 'node:crypto';
import { DATASETS, datasetOfCaptionsKey } from '../../core/s3-layout.ts';

/**
 * The re-run marker: writing `datasets/<name>/rerun` (any bytes) starts a run of the dataset's current captions.csv
 * and train.json under a new id, for changes the trigger cannot see (a fixed image: listing millions of images on
 * every upload is not an option).
 */
export const RERUN_FILE = 'rerun';

export const rerunKey = (dataset: string): string => `${DATASETS}/${dataset}/${RERUN_FILE}`;

/** `datasets/<name>/rerun` -> `<name>`; undefined for any other key. */
export function datasetOfRerunKey(key: string): string | undefined {
  const m = /^datasets\/([^/]+)\/rerun$/.exec(key);
  return m?.[1];
}

/** What a run reads, as the trigger can name it without listing the images. */
export interface RunInputs {
  /** captions.csv's content (handler.ts uploadContentId), or for a re-run its version or ETag. */
  captions: string;
  /** train.json's ETag; undefined when the dataset has none. */
  options?: string;
  /** The re-run marker's version (or sequencer): each write of it is a new run. */
  rerun?: string;
  /** A schedule tick's time: each period is a new run. */
  tick?: string;
}

/** The idempotency key's text: every part that can change what a run reads is in it. */
export function runContent(inputs: RunInputs): string {
  const lines = [inputs.captions, `train.json:${inputs.options ?? 'none'}`];
  if (inputs.rerun !== undefined) lines.push(`rerun:${inputs.rerun}`);
  if (inputs.tick !== undefined) lines.push(`tick:${inputs.tick}`);
  return lines.join('\n');
}

export interface RunStart {
  /** Step Functions execution name; equal to runId, so a repeated event maps to the same execution. */
  name: string;
  /** versionId: the captions.csv version the run reads (absent in an unversioned bucket). */
  input: { bucket: string; key: string; runId: string; versionId?: string };
}

/**
 * One run per content of what the run reads: the execution name hashes bucket, key and `content` (runContent:
 * captions.csv's bytes, train.json's ETag, and a re-run marker's version or a schedule tick's time), so
 * EventBridge's at-least-once duplicates and re-uploads of the same files collapse into one execution while a
 * change to either file, or a re-run marker, starts a new one. undefined for keys that are not a dataset's
 * captions.csv.
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
