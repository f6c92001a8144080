import { loadModelConfig, modelConfigNames } from '../worker/models/config.ts';
import { parseCsv } from './dataset/csv.ts';
import { mapLimit, readHead } from './dataset/objects.ts';
import { captionProblem, filenameProblem, hashSplit, parseSplit } from './dataset/rules.ts';
import { DEFAULT_MAX_PIXELS, ImageError, preprocessImage, probeImage, resizedWindow } from './preprocess.ts';
import { decodeJpeg } from './preprocess/jpeg-turbo.ts';
import { CAPTIONS_FILE, TRAIN_OPTIONS_FILE } from './s3-layout.ts';
import type { Split } from './shard-format.ts';
import type { ObjectStore } from './store.ts';
import { TrainOptionsSchema, type TrainOptions } from './train-options.ts';

/**
 * A dataset is a folder (S3 prefix datasets/<name>/ or a local directory) holding captions.csv, the images it
 * names, and optionally train.json. The rules are written for people in docs/DATASET.md; this module applies them.
 */

/** One usable caption row; also one row of a Shard handler input. */
export interface DatasetRow {
  line: number;
  filename: string;
  caption: string;
  split: Split;
  label?: string;
  /** The S3 version of the image that Validate checked: the Shard step reads that one, whatever is uploaded since. */
  version?: string;
}

/** Input of lambdas/shard/handler.ts, and one item of the shard plan. */
export interface ShardRequest {
  bucket: string;
  runId: string;
  dataset: string;
  shard: number;
  imageSize: number;
  bands?: number[];
  rows: DatasetRow[];
}

export interface DatasetProblem {
  file: typeof CAPTIONS_FILE | typeof TRAIN_OPTIONS_FILE;
  /** 1-based line in captions.csv (the header is line 1); absent for problems of train.json. */
  line?: number;
  /** Column name, `row` for the record as a whole, `header`, or a train.json key. */
  field: string;
  reason: string;
}

export interface ValidationReport {
  version: 1;
  dataset: string;
  source: string;
  valid: boolean;
  /** One line: why the dataset is invalid, or what passed. */
  summary: string;
  policy: 'fail' | 'skip';
  maxBadFraction: number;
  model: string;
  imageSize: number;
  counts: {
    rows: number;
    goodRows: number;
    badRows: number;
    images: number;
    goodImages: number;
    /** Good rows per split. */
    splits: Record<Split, number>;
  };
  /** In line order; at most MAX_REPORTED_PROBLEMS, the rest counted in problemsOmitted. */
  problems: DatasetProblem[];
  problemsOmitted: number;
}

export interface ValidationResult {
  report: ValidationReport;
  /** The rows that passed (all rows when valid under `fail`). */
  rows: DatasetRow[];
  options: TrainOptions;
}

export const DEFAULT_MODEL = 'ViT-B-32';
export const DEFAULT_SHARD_SIZE = 256;
export const DEFAULT_MAX_BAD_FRACTION = 0.05;
export const MAX_CSV_BYTES = 256 * 1024 * 1024;
/** An image object larger than this is refused before anything reads it whole. */
export const MAX_IMAGE_BYTES = 256 * 1024 * 1024;
/** Step Functions passes each plan item as state (256 KiB at most); rows of one shard stay below this. */
export const MAX_PLAN_ITEM_BYTES = 192 * 1024;
export const MAX_TRAIN_OPTIONS_BYTES = 64 * 1024;
export const MAX_REPORTED_PROBLEMS = 1000;
/** Header probe: enough for the image header of every supported format in practice (EXIF included). */
export const PROBE_BYTES = 256 * 1024;
const PROBE_CONCURRENCY = 16;
const COLUMNS = ['filename', 'caption', 'split', 'label'] as const;
const REQUIRED = ['filename', 'caption'] as const;
type Column = (typeof COLUMNS)[number];

interface Checked {
  line: number;
  filename: string;
  caption: string;
  split?: Split;
  label: string | null;
  bad: boolean;
  version?: string;
}

/** Checks a dataset folder without changing it. Never throws for bad data: the report says what is wrong. */
export async function validateDataset(store: ObjectStore, dataset: string): Promise<ValidationResult> {
  const problems: DatasetProblem[] = [];
  const fileProblem = (p: Omit<DatasetProblem, 'file'> & { file?: DatasetProblem['file'] }): void => {
    problems.push({ file: CAPTIONS_FILE, ...p });
  };
  const options = await readTrainOptions(store, problems);
  const model = options.model ?? DEFAULT_MODEL;
  const imageSize = modelImageSize(model, problems);
  const policy = options.validation?.policy ?? 'fail';
  const maxBadFraction = options.validation?.maxBadFraction ?? (policy === 'skip' ? DEFAULT_MAX_BAD_FRACTION : 0);
  const report = (rows: Checked[], malformed: number, valid: boolean, summary: string): ValidationResult => {
    const good = rows.filter((r) => !r.bad);
    const splits = { train: 0, val: 0, test: 0 };
    for (const r of good) splits[r.split!]++;
    problems.sort(byLine);
    return {
      options,
      rows: good.map((r) => ({
        line: r.line,
        filename: r.filename,
        caption: r.caption,
        split: r.split!,
        ...(r.label !== null ? { label: r.label } : {}),
        ...(r.version ? { version: r.version } : {}),
      })),
      report: {
        version: 1,
        dataset,
        source: `${store.uri.replace(/\/+$/, '')}/${CAPTIONS_FILE}`,
        valid,
        summary,
        policy,
        maxBadFraction,
        model,
        imageSize,
        counts: {
          rows: rows.length + malformed,
          goodRows: good.length,
          badRows: rows.length + malformed - good.length,
          images: new Set(rows.map((r) => r.filename)).size,
          goodImages: new Set(good.map((r) => r.filename)).size,
          splits,
        },
        problems: problems.slice(0, MAX_REPORTED_PROBLEMS),
        problemsOmitted: Math.max(0, problems.length - MAX_REPORTED_PROBLEMS),
      },
    };
  };
  const invalid = (rows: Checked[], malformed: number, cause: string): ValidationResult => report(rows, malformed, false, cause);

  const info = await store.head(CAPTIONS_FILE);
  if (!info) {
    fileProblem({ field: 'file', reason: `${CAPTIONS_FILE} not found in ${store.uri}` });
    return invalid([], 0, `${CAPTIONS_FILE} not found in ${store.uri}`);
  }
  if (info.size > MAX_CSV_BYTES) {
    fileProblem({ field: 'file', reason: `${CAPTIONS_FILE} is ${info.size} bytes, over the limit of ${MAX_CSV_BYTES}` });
    return invalid([], 0, problemLine(problems[problems.length - 1]!));
  }
  const csv = await parseCsv(await store.get(CAPTIONS_FILE));
  if (!csv.header) {
    fileProblem({ line: 1, field: 'header', reason: 'no header row (expected filename,caption[,split][,label])' });
    return invalid([], 0, `${CAPTIONS_FILE} has no header row`);
  }
  const columns = headerColumns(csv.header, problems);
  for (const p of csv.malformed) problems.push({ file: CAPTIONS_FILE, ...p });
  const malformed = csv.malformed.length;
  if (!columns) return invalid([], malformed, summarize(problems, 0, 0));
  const badUtf8 = new Set(csv.badUtf8Lines);

  const rowProblem = (r: Checked, field: string, reason: string): void => {
    problems.push({ file: CAPTIONS_FILE, line: r.line, field, reason });
    r.bad = true;
  };
  const rows: Checked[] = [];
  const firstOfImage = new Map<string, Checked>();
  const pairs = new Map<string, number>();
  for (const rec of csv.records) {
    const get = (c: Column): string => (columns[c] === undefined ? '' : (rec.fields[columns[c]!] ?? ''));
    const r: Checked = { line: rec.line, filename: get('filename'), caption: get('caption'), label: get('label') || null, bad: false };
    rows.push(r);
    const spanned = rec.fields.reduce((n, f) => n + (f.match(/\n/g)?.length ?? 0), 0);
    const badLine = [...Array(spanned + 1).keys()].map((k) => rec.line + k).find((l) => badUtf8.has(l));
    if (badLine !== undefined) {
      rowProblem(r, 'row', `not valid UTF-8${badLine !== r.line ? ` (line ${badLine})` : ''}: save the file as UTF-8`);
      continue;
    }
    if (rec.fields.length !== csv.header.length) {
      rowProblem(r, 'row', `expected ${csv.header.length} fields, found ${rec.fields.length}`);
      continue;
    }
    const fp = filenameProblem(r.filename);
    if (fp) rowProblem(r, 'filename', fp);
    const cp = captionProblem(r.caption);
    if (cp) rowProblem(r, 'caption', cp);
    if (columns.split !== undefined) {
      r.split = parseSplit(get('split'));
      if (!r.split) rowProblem(r, 'split', `unknown split '${get('split')}' (expected train, val or test)`);
    } else if (!fp) {
      r.split = hashSplit(r.filename, options.split);
    }
    if (r.bad) continue;
    const pair = `${r.filename}\u0000${r.caption}`;
    const dup = pairs.get(pair);
    if (dup !== undefined) rowProblem(r, 'caption', `duplicate of line ${dup} (same filename and caption)`);
    else pairs.set(pair, r.line);
    // The first otherwise-good row of an image fixes its split and label.
    const first = firstOfImage.get(r.filename);
    if (!first) firstOfImage.set(r.filename, r);
    else if (r.split !== first.split) {
      rowProblem(r, 'split', `image is '${first.split}' on line ${first.line} but '${r.split}' here (all captions of an image share its split)`);
    } else if (r.label !== first.label) {
      rowProblem(r, 'label', `image is labelled '${first.label ?? ''}' on line ${first.line} but '${r.label ?? ''}' here`);
    }
  }
  await checkImages(store, rows, firstOfImage, { size: imageSize, bands: options.bands }, rowProblem);

  const total = rows.length + malformed;
  const good = rows.filter((r) => !r.bad);
  const bad = total - good.length;
  if (total === 0) fileProblem({ line: 2, field: 'row', reason: 'no data rows' });
  else if (good.length > 0 && !good.some((r) => r.split === 'train')) fileProblem({ field: 'split', reason: 'no usable row is in the train split' });
  // Problems of the file as a whole (no line, or the header) cannot be skipped.
  const fatal = good.length === 0 || problems.some((p) => p.line === undefined || p.line === 1);
  const valid = !fatal && (policy === 'fail' ? bad === 0 : bad / total <= maxBadFraction);
  problems.sort(byLine);
  const summary = valid
    ? `${good.length} rows, ${new Set(good.map((r) => r.filename)).size} images valid` + (bad ? ` (${bad} bad rows skipped under policy 'skip')` : '')
    : summarize(problems, bad, total);
  return report(rows, malformed, valid, summary);
}

async function readTrainOptions(store: ObjectStore, problems: DatasetProblem[]): Promise<TrainOptions> {
  const add = (field: string, reason: string): TrainOptions => {
    problems.push({ file: TRAIN_OPTIONS_FILE, field, reason });
    return {};
  };
  const info = await store.head(TRAIN_OPTIONS_FILE);
  if (!info) return {};
  if (info.size > MAX_TRAIN_OPTIONS_BYTES) return add('file', `${info.size} bytes, over the limit of ${MAX_TRAIN_OPTIONS_BYTES}`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await store.get(TRAIN_OPTIONS_FILE)));
  } catch (e) {
    return add('file', `not valid JSON (${(e as Error).message})`);
  }
  const parsed = TrainOptionsSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return add(issue.path.join('.') || '(root)', issue.message);
  }
  return parsed.data;
}

/** The model's input size; model config names only (train.json must not name files on the validator's disk). */
function modelImageSize(model: string, problems: DatasetProblem[]): number {
  const known = modelConfigNames();
  if (!known.includes(model)) {
    problems.push({ file: TRAIN_OPTIONS_FILE, field: 'model', reason: `unknown model '${model}' (known: ${known.join(', ')})` });
    return loadModelConfig(DEFAULT_MODEL).vision_cfg.image_size;
  }
  return loadModelConfig(model).vision_cfg.image_size;
}

function headerColumns(header: string[], problems: DatasetProblem[]): Partial<Record<Column, number>> | undefined {
  const cols: Partial<Record<Column, number>> = {};
  let ok = true;
  const bad = (field: string, reason: string): void => {
    problems.push({ file: CAPTIONS_FILE, line: 1, field, reason });
    ok = false;
  };
  header.forEach((raw, i) => {
    const name = raw.trim().toLowerCase();
    if (!(COLUMNS as readonly string[]).includes(name)) bad(raw, `unknown column '${raw}' (expected filename, caption, split, label)`);
    else if (cols[name as Column] !== undefined) bad(name, `column '${name}' appears twice`);
    else cols[name as Column] = i;
  });
  for (const c of REQUIRED) if (cols[c] === undefined) bad(c, `missing column '${c}' (header must be filename,caption[,split][,label])`);
  return ok ? cols : undefined;
}

/**
 * Existence from one listing of the folder, then a header probe per distinct image (ranged GET of the first
 * PROBE_BYTES). An object that fits in the probe is decoded in full as the Shard step would, which also catches
 * truncation; larger ones are decoded at shard time. Each image's version (versioned buckets) is recorded on its rows.
 */
async function checkImages(
  store: ObjectStore,
  rows: Checked[],
  firstOfImage: Map<string, Checked>,
  opts: { size: number; bands?: number[] },
  rowProblem: (r: Checked, field: string, reason: string) => void,
): Promise<void> {
  const sizes = new Map((await store.list('')).map((o) => [o.key, o.size]));
  const reasons = new Map<string, string>();
  const versions = new Map<string, string>();
  const candidates = [...firstOfImage.keys()];
  await mapLimit(candidates, PROBE_CONCURRENCY, async (filename) => {
    const size = sizes.get(filename);
    if (size === undefined) {
      reasons.set(filename, 'image not found in the dataset folder');
      return;
    }
    // A ranged GET of an empty object is answered 416.
    if (size === 0) {
      reasons.set(filename, 'image file is empty (0 bytes)');
      return;
    }
    if (size > MAX_IMAGE_BYTES) {
      reasons.set(filename, `image file is ${size} bytes, over the limit of ${MAX_IMAGE_BYTES}`);
      return;
    }
    try {
      const first = await readHead(store, filename, PROBE_BYTES);
      if (first.version) versions.set(filename, first.version);
      let head = first.bytes;
      const whole = size <= PROBE_BYTES;
      // A plain JPEG that libjpeg-turbo decodes is the whole of what the Shard step will do with it (preprocess.ts).
      const jpeg = whole ? decodeJpeg(head, DEFAULT_MAX_PIXELS) : undefined;
      if (jpeg) {
        resizedWindow(jpeg.width, jpeg.height, { ...opts, source: filename });
        return;
      }
      try {
        await probeImage(head, { ...opts, source: filename });
      } catch (e) {
        if (whole || !(e instanceof ImageError)) throw e;
        head = (await readHead(store, filename, size, first.version)).bytes;
        await probeImage(head, { ...opts, source: filename });
      }
      if (whole) await preprocessImage(head, { ...opts, source: filename });
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      reasons.set(filename, e.reason);
    }
  });
  for (const r of rows) {
    const reason = reasons.get(r.filename);
    if (reason && !r.bad) rowProblem(r, 'filename', reason);
    r.version = versions.get(r.filename);
  }
}

const byLine = (a: DatasetProblem, b: DatasetProblem): number => (a.line ?? 0) - (b.line ?? 0);

function problemLine(p: DatasetProblem): string {
  return `${p.file}${p.line !== undefined ? ` line ${p.line}` : ''} ${p.field}: ${p.reason}`;
}

function summarize(problems: DatasetProblem[], bad: number, total: number): string {
  const shown = problems.slice(0, 3).map(problemLine).join('; ');
  const more = problems.length > 3 ? `; +${problems.length - 3} more` : '';
  const count = total > 0 ? `${bad} of ${total} rows are bad: ` : '';
  return `${count}${shown}${more}`;
}

/**
 * Groups rows into shards of at most `shardSize` rows and MAX_PLAN_ITEM_BYTES of row JSON; all rows of an image go
 * to the same shard (an image with more rows than that gets a shard of its own). Images keep their
 * first-appearance order.
 */
export function planShards(rows: DatasetRow[], shardSize = DEFAULT_SHARD_SIZE): DatasetRow[][] {
  const byImage = new Map<string, DatasetRow[]>();
  for (const r of rows) {
    const list = byImage.get(r.filename);
    if (list) list.push(r);
    else byImage.set(r.filename, [r]);
  }
  const shards: DatasetRow[][] = [];
  let current: DatasetRow[] = [];
  let bytes = 0;
  for (const group of byImage.values()) {
    const groupBytes = group.reduce((n, r) => n + Buffer.byteLength(JSON.stringify(r)) + 1, 0);
    if (current.length > 0 && (current.length + group.length > shardSize || bytes + groupBytes > MAX_PLAN_ITEM_BYTES)) {
      shards.push(current);
      current = [];
      bytes = 0;
    }
    current.push(...group);
    bytes += groupBytes;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}
