import { loadModelConfig, modelNameProblem } from '../model-config/config.ts';
import { CAPTIONS_FILE, datasetPrefix, MODELS, TRAIN_OPTIONS_FILE } from '../s3-layout.ts';
import { SPLITS, type Split } from '../shard-format.ts';
import type { ObjectStore } from '../store.ts';
import { resolveLatestInit } from '../latest-model.ts';
import { TrainInputError } from '../run-errors.ts';
import { INIT_CHECKPOINT_SUFFIXES, INIT_LATEST, INIT_RANDOM_PREFIX, parseTrainOptions, type TrainOptions } from '../train-options.ts';
import { csvRecords, type CsvRecord } from './csv.ts';
import { KeyTable } from './key-table.ts';
import { bucketOf, BucketCounts, cutShards, PlanSpill } from './plan.ts';
import { ProblemList, summarize } from './problems.ts';
import { captionProblem, filenameProblem, hashSplit, parseSplit } from './rules.ts';
import {
  DEFAULT_MAX_BAD_FRACTION,
  DEFAULT_MODEL,
  DEFAULT_SHARD_SIZE,
  MAX_CSV_BYTES,
  MAX_IMAGE_BYTES,
  MAX_TRAIN_OPTIONS_BYTES,
  type DatasetProblem,
  type DatasetRow,
  type ShardRequest,
  type ValidationReport,
} from './types.ts';

/**
 * A dataset is a folder (S3 prefix datasets/<name>/ or a local directory) holding captions.csv, the images it
 * names, and optionally train.json. The rules are written for people in docs/DATASET.md; this module applies
 * those that need no image decoding (the Shard step decodes, core/dataset/build-shard.ts).
 *
 * Everything is streamed: the listing a page at a time, captions.csv a chunk at a time, twice (rules, then the
 * plan). What is kept per image and per row is a hashed key and a few numbers (KeyTable), so memory and time per
 * row stay small and bounded whatever the dataset size.
 */

const COLUMNS = ['filename', 'caption', 'split', 'label'] as const;
const REQUIRED = ['filename', 'caption'] as const;
type Column = (typeof COLUMNS)[number];
type Columns = Partial<Record<Column, number>>;

/** KeyTable lanes of an image (listed object or named filename). */
const SIZE = 0; // object size (capped), -1 when not listed
const FIRST_LINE = 1; // first good row naming it; 0 when no row named it, -1 when only bad rows did
const SPLIT_LABEL = 2; // split index | (label id + 1) << 2
const NOT_LISTED = -1;

export interface ValidationResult {
  report: ValidationReport;
  options: TrainOptions;
  /** The shard plan's items, when a `plan` target was given and the dataset is valid. */
  plan?: ShardRequest[];
}

export interface PlanTarget {
  /** Where the spill objects go (the bucket root in the pipeline). */
  store: ObjectStore;
  /** Spill key prefix in `store`. */
  prefix: string;
  bucket: string;
  runId: string;
  spillBytes?: number;
  /** Plan the good rows of an invalid dataset too, so that its images are checked in the same pass (`rsclip validate`). */
  always?: boolean;
}

/**
 * What train.json's `init` may name, so that one dataset cannot make the worker read another's data. Always:
 * `random:<config>` and `latest` (models/<dataset>/latest.json, which Publish writes), a checkpoint file (by
 * suffix) under the dataset's own datasets/<name>/, anything under models/ of the run's bucket, and the
 * deployment's `sources`. The Batch job role's S3 read grant is built from the same prefixes and suffixes
 * (cdk/gpu-compute.ts), so IAM refuses what this rule would have let through by mistake.
 */
export interface InitRule {
  /** The run's bucket. */
  bucket: string;
  /**
   * More s3:// URIs a run may start from (the stack's `initSources`): one ending in `/` is a prefix, any other an
   * object. ANY_INIT_SOURCE allows anything (the local runner: no IAM there, the worker reads this machine's files).
   */
  sources: readonly string[];
}

/** InitRule.sources entry that allows every init: only the local runner sets it. */
export const ANY_INIT_SOURCE = '*';

/** Why `init` is outside what `dataset` may read under `rule`, in one line; undefined when it is allowed. */
export function initProblem(init: string, dataset: string, rule: InitRule): string | undefined {
  if (rule.sources.includes(ANY_INIT_SOURCE) || init === INIT_LATEST || init.startsWith(INIT_RANDOM_PREFIX)) return undefined;
  const root = `s3://${rule.bucket}/`;
  const own = `${root}${datasetPrefix(dataset)}/`;
  const allowed = [
    `${INIT_RANDOM_PREFIX}<config>`,
    INIT_LATEST,
    `a ${INIT_CHECKPOINT_SUFFIXES.join('/')} file under ${own}`,
    `anything under ${root}${MODELS}/`,
    ...rule.sources,
  ].join(', ');
  const refuse = (why: string) => `init '${init}' ${why}; a run of dataset '${dataset}' may start from ${allowed}`;
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(init);
  if (!m) return refuse('is not an s3:// URI');
  // S3 keys are literal, but the worker's store refuses '..' and a client may normalize '.' segments.
  if (m[2]!.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')) return refuse("has an empty, '.' or '..' path segment");
  if (rule.sources.some((s) => (s.endsWith('/') ? init.startsWith(s) : init === s))) return undefined;
  if (m[1] === rule.bucket) {
    const key = m[2]!;
    if (key.startsWith(`${MODELS}/`)) return undefined;
    if (key.startsWith(`${datasetPrefix(dataset)}/`) && INIT_CHECKPOINT_SUFFIXES.some((s) => key.endsWith(s))) return undefined;
  }
  return refuse('is outside what the dataset may read');
}

export interface ValidateChecks {
  /** Check train.json's `init` against this rule (the Validate handler); unset: not checked (`rsclip validate`). */
  init?: InitRule;
  /**
   * The bucket whose models/<dataset>/latest.json an `init: latest` names (the Validate handler): resolved here,
   * once per run, so that the shards are made at the size of the model the run will train, the run's role names
   * that one model, and every attempt starts from the same weights. Unset: left as `latest`.
   */
  models?: ObjectStore;
}

/** Checks a dataset folder without changing it, and with a `plan` target writes the shard plan. Never throws for bad data. */
export async function validateCaptions(store: ObjectStore, dataset: string, plan?: PlanTarget, checks: ValidateChecks = {}): Promise<ValidationResult> {
  const problems = new ProblemList();
  let options = await readTrainOptions(store, problems);
  const initRefused = options.init !== undefined && checks.init ? initProblem(options.init, dataset, checks.init) : undefined;
  if (initRefused) problems.add({ file: TRAIN_OPTIONS_FILE, field: 'init', reason: initRefused });
  if (options.init === INIT_LATEST && checks.models) {
    try {
      options = await resolveLatestInit(options, dataset, checks.models);
    } catch (e) {
      if (!(e instanceof TrainInputError)) throw e;
      problems.add({ file: TRAIN_OPTIONS_FILE, field: 'init', reason: e.message });
    }
  }
  const model = options.model ?? DEFAULT_MODEL;
  const imageSize = modelImageSize(model, problems);
  const policy = options.validation?.policy ?? 'fail';
  const maxBadFraction = options.validation?.maxBadFraction ?? (policy === 'skip' ? DEFAULT_MAX_BAD_FRACTION : 0);
  const counts = { rows: 0, goodRows: 0, badRows: 0, images: 0, goodImages: 0, splits: { train: 0, val: 0, test: 0 } };
  const finish = (valid: boolean, summary: string): ValidationResult => ({
    options,
    report: {
      version: 1,
      dataset,
      source: `${store.uri.replace(/\/+$/, '')}/${CAPTIONS_FILE}`,
      valid,
      checked: 'captions',
      summary,
      policy,
      maxBadFraction,
      model,
      imageSize,
      counts,
      ...problems.sorted(),
    },
  });
  const fileProblem = (reason: string, line?: number, field = 'file'): ValidationResult => {
    problems.add({ file: CAPTIONS_FILE, ...(line !== undefined ? { line } : {}), field, reason });
    return finish(false, problems.total > 1 ? summarize(problems.sorted().problems, problems.total, 0, 0) : reason);
  };

  const info = await store.head(CAPTIONS_FILE);
  if (!info) return fileProblem(`${CAPTIONS_FILE} not found in ${store.uri}`);
  if (info.size > MAX_CSV_BYTES) return fileProblem(`${CAPTIONS_FILE} is ${info.size} bytes, over the limit of ${MAX_CSV_BYTES}`);

  const images = new KeyTable(3);
  for await (const o of store.listEach('')) images.set(images.insert(o.key).slot, SIZE, Math.min(o.size, MAX_IMAGE_BYTES + 1));
  const pairs = new KeyTable(1);
  const labels = new Map<string, number>();
  const labelNames: string[] = [];
  const badLines = new LineSet();
  const buckets = new BucketCounts();
  const goodImagesPerSplit = { train: 0, val: 0, test: 0 };
  let columns: Columns | undefined;
  let width = 0;
  let sawHeader = false;
  const bad = (line: number, field: string, reason: string): void => {
    problems.add({ file: CAPTIONS_FILE, line, field, reason });
    badLines.add(line);
  };

  for await (const item of captionRecords(store)) {
    if ('unreadable' in item) return fileProblem(`${CAPTIONS_FILE} is ${item.unreadable}`);
    if ('malformed' in item) {
      counts.rows++;
      bad(item.malformed.line, item.malformed.field, item.malformed.reason);
      continue;
    }
    const { rec, badUtf8 } = item;
    if (!sawHeader) {
      sawHeader = true;
      if (rec.line !== 1) return fileProblem('no header row (expected filename,caption[,split][,label])', 1, 'header');
      columns = headerColumns(rec.fields, problems);
      width = rec.fields.length;
      continue;
    }
    counts.rows++;
    if (!columns) {
      badLines.add(rec.line);
      continue;
    }
    if (badUtf8 !== undefined) {
      bad(rec.line, 'row', `not valid UTF-8${badUtf8 !== rec.line ? ` (line ${badUtf8})` : ''}: save the file as UTF-8`);
      continue;
    }
    if (rec.fields.length !== width) {
      bad(rec.line, 'row', `expected ${width} fields, found ${rec.fields.length}`);
      continue;
    }
    const row = rowOf(rec, columns);
    let ok = true;
    const rowProblem = (field: string, reason: string): void => {
      bad(rec.line, field, reason);
      ok = false;
    };
    const fp = filenameProblem(row.filename);
    if (fp) rowProblem('filename', fp);
    const cp = captionProblem(row.caption);
    if (cp) rowProblem('caption', cp);
    // Without a split column an image's split is the hash of its name: computed once, then the recorded one.
    const rowSplit =
      columns.split !== undefined ? parseSplit(row.rawSplit) : fp ? undefined : (recordedSplit(images, row.filename) ?? hashSplit(row.filename, options.split));
    if (!rowSplit && !(columns.split === undefined && fp)) rowProblem('split', `unknown split '${row.rawSplit}' (expected train, val or test)`);
    if (!ok) continue;
    const split = rowSplit!;
    const pair = pairs.insert(`${row.filename}\u0000${row.caption}`);
    if (pair.added) pairs.set(pair.slot, 0, rec.line);
    const { slot, added } = images.insert(row.filename);
    if (added) images.set(slot, SIZE, NOT_LISTED);
    const size = images.get(slot, SIZE);
    const first = images.get(slot, FIRST_LINE);
    if (first === 0) {
      counts.images++;
      images.set(slot, FIRST_LINE, -1);
    }
    const labelId = row.label === null ? -1 : labelIdOf(labels, labelNames, row.label);
    if (!pair.added) rowProblem('caption', `duplicate of line ${pairs.get(pair.slot, 0)} (same filename and caption)`);
    else if (size === NOT_LISTED) rowProblem('filename', `image not found in the dataset folder${otherFormHint(images, row.filename)}`);
    else if (size === 0) rowProblem('filename', 'image file is empty (0 bytes)');
    else if (size > MAX_IMAGE_BYTES) rowProblem('filename', `image file is over the limit of ${MAX_IMAGE_BYTES} bytes`);
    else if (first <= 0) {
      // The first otherwise-good row of an image fixes its split and label.
      images.set(slot, FIRST_LINE, rec.line);
      images.set(slot, SPLIT_LABEL, SPLITS.indexOf(split) | ((labelId + 1) << 2));
      goodImagesPerSplit[split]++;
    } else {
      const packed = images.get(slot, SPLIT_LABEL);
      const firstSplit = SPLITS[packed & 3]!;
      const firstLabel = (packed >> 2) - 1;
      if (firstSplit !== split) {
        rowProblem('split', `image is '${firstSplit}' on line ${first} but '${split}' here (all captions of an image share its split)`);
      } else if (firstLabel !== labelId) {
        rowProblem('label', `image is labelled '${labelNames[firstLabel] ?? ''}' on line ${first} but '${row.label ?? ''}' here`);
      }
    }
    if (!ok) continue;
    counts.goodRows++;
    counts.splits[split]++;
    buckets.add(split, row.filename);
  }
  if (!sawHeader) return fileProblem('no header row (expected filename,caption[,split][,label])', 1, 'header');
  counts.badRows = counts.rows - counts.goodRows;
  counts.goodImages = goodImagesPerSplit.train + goodImagesPerSplit.val + goodImagesPerSplit.test;

  if (counts.rows === 0) problems.add({ file: CAPTIONS_FILE, line: 2, field: 'row', reason: 'no data rows' });
  else if (counts.goodRows > 0 && counts.splits.train === 0) problems.add({ file: CAPTIONS_FILE, field: 'split', reason: 'no usable row is in the train split' });
  const valid = isValid(problems.fatal, counts, policy, maxBadFraction);
  const summary = valid ? passedSummary(counts, policy) : summarize(problems.sorted().problems, problems.total, counts.badRows, counts.rows);
  const result = finish(valid, summary);
  if (plan && (valid || (plan.always && counts.goodRows > 0))) result.plan = await writePlan(store, dataset, options, imageSize, buckets, badLines, images, plan);
  return result;
}

/** Under `fail` no bad row is allowed, under `skip` up to maxBadFraction; problems of the file as a whole never pass. */
export function isValid(fatal: boolean, counts: ValidationReport['counts'], policy: 'fail' | 'skip', maxBadFraction: number): boolean {
  if (fatal || counts.goodRows === 0 || counts.splits.train === 0) return false;
  return policy === 'fail' ? counts.badRows === 0 : counts.badRows / counts.rows <= maxBadFraction;
}

export function passedSummary(counts: ValidationReport['counts'], policy: 'fail' | 'skip'): string {
  const skipped = counts.badRows ? ` (${counts.badRows} bad rows skipped under policy '${policy}')` : '';
  return `${counts.goodRows} rows, ${counts.goodImages} images valid${skipped}`;
}

/** Second pass: the good rows (those the first pass left out of badLines) spilled to their shards. */
async function writePlan(
  store: ObjectStore,
  dataset: string,
  options: TrainOptions,
  imageSize: number,
  buckets: BucketCounts,
  badLines: LineSet,
  images: KeyTable,
  target: PlanTarget,
): Promise<ShardRequest[]> {
  const cuts = cutShards(buckets, options.shardSize ?? DEFAULT_SHARD_SIZE);
  const spill = new PlanSpill(target.store, target.prefix, cuts.shards.length, target.spillBytes);
  let columns: Columns | undefined;
  for await (const item of captionRecords(store)) {
    if (!('rec' in item)) continue;
    if (!columns) {
      columns = headerColumns(item.rec.fields, new ProblemList())!;
      continue;
    }
    if (badLines.has(item.rec.line)) continue;
    const r = rowOf(item.rec, columns);
    // A good row's split is its image's, recorded by the first pass.
    const split = recordedSplit(images, r.filename)!;
    const row: DatasetRow = { line: item.rec.line, filename: r.filename, caption: r.caption, split, ...(r.label !== null ? { label: r.label } : {}) };
    await spill.add(cuts.shardOf[row.split][bucketOf(row.filename)]!, row);
  }
  const parts = await spill.finish();
  return cuts.shards.map((s, shard) => ({
    bucket: target.bucket,
    runId: target.runId,
    dataset,
    shard,
    split: s.split,
    imageSize,
    ...(options.bands ? { bands: options.bands } : {}),
    rows: s.rows,
    part: parts[shard]!,
  }));
}

/** captions.csv's records with the first invalid-UTF-8 line each spans. */
async function* captionRecords(
  store: ObjectStore,
): AsyncGenerator<{ rec: CsvRecord; badUtf8?: number } | { malformed: DatasetProblem & { line: number } } | { unreadable: string }> {
  const badUtf8 = new Set<number>();
  for await (const item of csvRecords(store.stream(CAPTIONS_FILE), badUtf8)) {
    if ('unreadable' in item) {
      yield item;
      continue;
    }
    if ('malformed' in item) {
      yield { malformed: { file: CAPTIONS_FILE, ...item.malformed } };
      continue;
    }
    const rec = item.record;
    let spanned = 0;
    for (const f of rec.fields) for (let i = f.indexOf('\n'); i !== -1; i = f.indexOf('\n', i + 1)) spanned++;
    let first: number | undefined;
    for (let l = rec.line; l <= rec.line + spanned && first === undefined; l++) if (badUtf8.has(l)) first = l;
    yield { rec, ...(first !== undefined ? { badUtf8: first } : {}) };
  }
}

function rowOf(rec: CsvRecord, columns: Columns): { filename: string; caption: string; rawSplit: string; label: string | null } {
  const get = (c: Column): string => (columns[c] === undefined ? '' : (rec.fields[columns[c]!] ?? ''));
  return { filename: get('filename'), caption: get('caption'), rawSplit: get('split'), label: get('label') || null };
}

/** The split an earlier good row fixed for the image; undefined before one did. */
function recordedSplit(images: KeyTable, filename: string): Split | undefined {
  const slot = images.find(filename);
  return slot >= 0 && images.get(slot, FIRST_LINE) > 0 ? SPLITS[images.get(slot, SPLIT_LABEL) & 3] : undefined;
}

/**
 * For a name that is not listed: the Unicode form in which the folder does hold it. Keys are compared as written, and
 * the same 'café.png' may be NFC in a CSV from one program and NFD (accents as combining marks) on a disk
 * written by macOS, where both print alike.
 */
function otherFormHint(images: KeyTable, filename: string): string {
  for (const form of ['NFC', 'NFD'] as const) {
    const other = filename.normalize(form);
    if (other === filename) continue;
    const slot = images.find(other);
    if (slot >= 0 && images.get(slot, SIZE) !== NOT_LISTED) {
      return ` as written, but it holds the name in Unicode ${form}, which prints alike with other bytes: write the row's name as the file is named, or rename the file`;
    }
  }
  return '';
}

function labelIdOf(labels: Map<string, number>, names: string[], label: string): number {
  let id = labels.get(label);
  if (id === undefined) {
    id = names.length;
    labels.set(label, id);
    names.push(label);
  }
  return id;
}

async function readTrainOptions(store: ObjectStore, problems: ProblemList): Promise<TrainOptions> {
  const add = (field: string, reason: string): TrainOptions => {
    problems.add({ file: TRAIN_OPTIONS_FILE, field, reason });
    return {};
  };
  const info = await store.head(TRAIN_OPTIONS_FILE);
  if (!info) return {};
  if (info.size > MAX_TRAIN_OPTIONS_BYTES) return add('file', `${info.size} bytes, over the limit of ${MAX_TRAIN_OPTIONS_BYTES}`);
  const parsed = parseTrainOptions(await store.get(TRAIN_OPTIONS_FILE));
  return 'options' in parsed ? parsed.options : add(parsed.field, parsed.reason);
}

/** The model's input size; model config names only (train.json must not name files on the validator's disk). */
function modelImageSize(model: string, problems: ProblemList): number {
  const problem = modelNameProblem(model);
  if (problem) {
    problems.add({ file: TRAIN_OPTIONS_FILE, field: 'model', reason: problem });
    return loadModelConfig(DEFAULT_MODEL).vision_cfg.image_size;
  }
  return loadModelConfig(model).vision_cfg.image_size;
}

function headerColumns(header: string[], problems: ProblemList): Columns | undefined {
  const cols: Columns = {};
  let ok = true;
  const bad = (field: string, reason: string): void => {
    problems.add({ file: CAPTIONS_FILE, line: 1, field, reason });
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

/** A growable bitset of line numbers: 5M lines in 625 KB. */
class LineSet {
  private bits = new Uint32Array(1024);
  add(line: number): void {
    const w = line >>> 5;
    if (w >= this.bits.length) {
      const grown = new Uint32Array(Math.max(w + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    this.bits[w]! |= 1 << (line & 31);
  }
  has(line: number): boolean {
    const w = line >>> 5;
    return w < this.bits.length && (this.bits[w]! & (1 << (line & 31))) !== 0;
  }
}
