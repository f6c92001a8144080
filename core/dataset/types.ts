import type { CAPTIONS_FILE, TRAIN_OPTIONS_FILE } from '../s3-layout.ts';
import type { Split } from '../shard-format.ts';

/** One usable caption row: one line of a plan part file, and one caption of a shard. */
export interface DatasetRow {
  line: number;
  filename: string;
  caption: string;
  split: Split;
  label?: string;
}

/** A byte range [start, end) of the plan object: the rows of one shard. */
export interface PlanPart {
  key: string;
  start: number;
  end: number;
}

/**
 * One item of the shard plan, the input of lambdas/shard/handler.ts. It names where its rows are instead of
 * carrying them, so an item stays a few hundred bytes whatever the shard or dataset size.
 */
export interface ShardRequest {
  bucket: string;
  runId: string;
  dataset: string;
  shard: number;
  split: Split;
  imageSize: number;
  bands?: number[];
  /** Caption rows the part holds. */
  rows: number;
  part: PlanPart;
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
  /**
   * `captions`: the CSV, the listing and train.json were checked (Validate); `images`: every image was also
   * decoded (after the Shard step, or by `rsclip validate`).
   */
  checked: 'captions' | 'images';
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

/** What one Shard item found, written beside its shard as shard-<n>.json and merged by Collect. */
export interface ShardSummary {
  shard: number;
  split: Split;
  /** The shard's file name; absent when no image of the item could be read. */
  name?: string;
  imageSize: number;
  rows: number;
  images: number;
  sha256?: string;
  /** Distinct labels of the good images. */
  labels: string[];
  badRows: number;
  badImages: number;
  /** Rows of unreadable images, in line order; at most MAX_REPORTED_PROBLEMS. */
  problems: DatasetProblem[];
}

export const DEFAULT_MODEL = 'ViT-B-32';
export const DEFAULT_SHARD_SIZE = 256;
export const DEFAULT_MAX_BAD_FRACTION = 0.05;
/** Read as a stream twice; the bound is Validate's time (bench-scale measures it), not its memory. */
export const MAX_CSV_BYTES = 4 * 1024 ** 3;
/** An image object larger than this is refused before anything reads it whole. */
export const MAX_IMAGE_BYTES = 256 * 1024 * 1024;
export const MAX_TRAIN_OPTIONS_BYTES = 64 * 1024;
export const MAX_REPORTED_PROBLEMS = 1000;

/** Thrown by Validate and Collect when the dataset breaks its validation policy; Step Functions matches on the name. */
export class DatasetInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetInvalid';
  }
}
