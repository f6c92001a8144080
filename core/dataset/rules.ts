import { createHash } from 'node:crypto';
import { SPLITS, type Split } from '../shard-format.ts';
import { TMP_SEGMENT } from '../store.ts';

/** Longer captions are almost certainly not captions; open_clip keeps 77 tokens of them anyway. */
export const MAX_CAPTION_CHARS = 1000;
export const MAX_FILENAME_CHARS = 1024;
export const DEFAULT_SPLIT = { train: 0.9, val: 0.05, test: 0.05 } as const;

/**
 * Why `filename` may not name an image under the dataset prefix, or undefined when it may. Only plain relative
 * paths with `/` separators are accepted: no `..`, `.` or empty segments, no absolute paths, no URLs or drive
 * letters, no backslashes or control characters.
 */
export function filenameProblem(filename: string): string | undefined {
  if (filename.trim() === '') return 'empty filename';
  if (filename.length > MAX_FILENAME_CHARS) return `filename is ${filename.length} characters, over the limit of ${MAX_FILENAME_CHARS}`;
  if (/[\u0000-\u001f\u007f]/.test(filename)) return 'filename contains control characters';
  if (filename.includes('\\')) return 'filename contains a backslash (use / between folders)';
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(filename)) return 'filename is a URL or drive path; it must be relative to the dataset folder';
  if (filename.startsWith('/')) return 'filename is an absolute path; it must be relative to the dataset folder';
  const segments = filename.split('/');
  if (segments.includes('..')) return "filename escapes the dataset folder ('..')";
  if (segments.some((s) => s === '' || s === '.')) return "filename has an empty or '.' path segment";
  if (filename !== filename.trim()) return 'filename has leading or trailing spaces';
  const outside = notInDataset(filename);
  return outside && `filename ${outside}`;
}

/**
 * Why a key of a dataset folder is not part of the dataset, or undefined when it may be: hidden files and folders
 * (`.DS_Store`, `._x.png` AppleDouble files, `.git/`) and the `_tmp/` folder where local stores stage their writes.
 * `rsclip run` does not upload them and a row naming one is bad, so that `validate`, `run` and the pipeline give a
 * folder one verdict.
 */
export function notInDataset(key: string): string | undefined {
  if (key.split('/').some((s) => s.startsWith('.'))) return "names a hidden file or folder (a name starting with '.'), which is not part of a dataset";
  if (key.startsWith(`${TMP_SEGMENT}/`)) return `is under ${TMP_SEGMENT}/, where files are staged, which is not part of a dataset`;
  return undefined;
}

export function captionProblem(caption: string): string | undefined {
  if (caption.trim() === '') return 'empty or whitespace-only caption';
  const chars = [...caption].length;
  if (chars > MAX_CAPTION_CHARS) return `caption is ${chars} characters, over the limit of ${MAX_CAPTION_CHARS}`;
  return undefined;
}

export function parseSplit(value: string): Split | undefined {
  return (SPLITS as readonly string[]).includes(value) ? (value as Split) : undefined;
}

/**
 * The split of an image when the CSV has no split column: the first 8 bytes of SHA-256(filename) as a fraction
 * in [0, 1), cut by the (normalised) fractions. Depends on the filename only, so every caption of an image and
 * every later version of the dataset agree.
 */
export function hashSplit(filename: string, fractions: { train: number; val: number; test: number } = DEFAULT_SPLIT): Split {
  const total = fractions.train + fractions.val + fractions.test;
  if (!(total > 0)) throw new Error('split fractions must not all be zero');
  const u = Number(createHash('sha256').update(filename, 'utf8').digest().readBigUInt64BE(0) >> 11n) / 2 ** 53;
  if (u < fractions.train / total) return 'train';
  if (u < (fractions.train + fractions.val) / total) return 'val';
  return 'test';
}
