import { z } from 'zod';
import { firstIssue } from './schema-issue.ts';
import { utf16Of } from './utf16.ts';

/** Compiled here, as the worker compiles it (`new RegExp(p)`), so that Validate refuses what Train would throw on. */
function regexProblem(pattern: string, ctx: z.RefinementCtx): void {
  try {
    new RegExp(pattern);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(pattern)} is not a valid regular expression (${(e as Error).message})` });
  }
}

/** Checkpoint files a dataset may keep in its own folder and start from (torch zip, safetensors). */
export const INIT_CHECKPOINT_SUFFIXES = ['.pt', '.pth', '.bin', '.safetensors'] as const;
/** worker/train/base-model.ts RANDOM_PREFIX and LATEST (core does not import the worker; a test keeps them equal). */
export const INIT_RANDOM_PREFIX = 'random:';
export const INIT_LATEST = 'latest';

/**
 * `datasets/<name>/train.json`: what a dataset owner may override. Unset hyper-parameters take the recipe of
 * the model's family (worker/train/recipe.ts), so one file holds each default.
 */
export const TrainOptionsSchema = z
  .object({
    /** open_clip model-config name (core/model-config/configs/<name>.json). */
    model: z.string().min(1).optional(),
    /**
     * Base checkpoint URI (s3://... or a local path); `latest` continues from the model models/<dataset>/latest.json
     * names when the run is validated (with that run's `model` unless this file sets one).
     */
    init: z.string().min(1).optional(),
    /** Load `init` without the state-dict keys its config does not declare (logged) instead of refusing it, as open_clip's strict=False. */
    ignoreUnexpectedKeys: z.boolean().optional(),
    epochs: z.number().int().positive().optional(),
    maxSteps: z.number().int().positive().optional(),
    batchSize: z.number().int().positive().optional(),
    accumulate: z.number().int().positive().optional(),
    lr: z.number().positive().optional(),
    warmupSteps: z.number().int().nonnegative().optional(),
    weightDecay: z.number().nonnegative().optional(),
    beta1: z.number().min(0).lt(1).optional(),
    beta2: z.number().min(0).lt(1).optional(),
    eps: z.number().positive().optional(),
    gradClip: z.number().nonnegative().optional(),
    seed: z.number().int().nonnegative().optional(),
    checkpointEvery: z.number().int().positive().optional(),
    /**
     * Images of the evaluations at step 0 and after each epoch but the last: the first shards of the split that
     * hold this many (default 5000). The last evaluation and the test evaluation cover the whole split.
     */
    evalSampleImages: z.number().int().min(1).optional(),
    /** Regular expressions over parameter names to keep frozen. */
    freeze: z.array(z.string().superRefine(regexProblem)).optional(),
    freezeBnStats: z.boolean().optional(),
    augment: z
      .object({
        randomResizedCrop: z.boolean().optional(),
        dihedral: z.boolean().optional(),
      })
      .strict()
      .optional(),
    /** Zero-based band indices for multi-band TIFF/GeoTIFF, in R,G,B order (default [0,1,2]). */
    bands: z.array(z.number().int().nonnegative()).length(3).optional(),
    /** Fractions for the hash split when the CSV has no `split` column. */
    split: z
      .object({ train: z.number().min(0), val: z.number().min(0), test: z.number().min(0) })
      .strict()
      // The fractions are normalised by their sum, which must be positive for any image to get a split.
      .refine((s) => s.train + s.val + s.test > 0, { message: 'the fractions must not all be zero (e.g. {"train": 0.9, "val": 0.05, "test": 0.05})' })
      .optional(),
    validation: z
      .object({
        /** `fail`: any bad row fails the run; `skip`: bad rows are dropped while under maxBadFraction. */
        policy: z.enum(['fail', 'skip']).optional(),
        maxBadFraction: z.number().min(0).max(1).optional(),
      })
      .strict()
      .optional(),
    /** Rows per shard. */
    shardSize: z.number().int().positive().optional(),
  })
  .strict();

export type TrainOptions = z.infer<typeof TrainOptionsSchema>;

/**
 * A train.json file's bytes as options, or its first problem: `field` is the option's dotted path, or `file` for
 * the file as a whole. UTF-8 with or without a byte-order mark, as captions.csv. The one reader of train.json, so
 * that `validate`, `run` and the pipeline give a file one verdict.
 */
export function parseTrainOptions(bytes: Uint8Array): { options: TrainOptions } | { field: string; reason: string } {
  const utf16 = utf16Of(bytes);
  if (utf16) return { field: 'file', reason: `${utf16}: save it as UTF-8` };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return { field: 'file', reason: 'not valid UTF-8: save the file as UTF-8' };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    // V8 quotes the text around the error, line breaks included.
    return { field: 'file', reason: `not valid JSON (${(e as Error).message.replace(/\s+/g, ' ')})` };
  }
  const parsed = TrainOptionsSchema.safeParse(json);
  if (!parsed.success) {
    const { at, message } = firstIssue(parsed.error);
    return { field: at, reason: message };
  }
  return { options: parsed.data };
}
