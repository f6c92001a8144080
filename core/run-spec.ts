import { z } from 'zod';
import { TrainOptionsSchema } from './train-options.ts';

/**
 * What the Train step hands the worker (Step Functions input, `RUN_SPEC` environment variable, or CLI flags).
 * Everything else (shard keys, output keys) follows from core/s3-layout.ts.
 */
export const RunSpecSchema = z
  .object({
    runId: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/),
    bucket: z.string().min(3),
    dataset: z.string().min(1),
    /** Base checkpoint URI when train.json sets none. */
    baseModel: z.string().optional(),
    /** Options after merging train.json over deployment defaults. */
    options: TrainOptionsSchema.default({}),
  })
  .strict();

export type RunSpec = z.infer<typeof RunSpecSchema>;

/** The container's attempt budget in seconds (the Batch job definition's attempt timeout), set by cdk/gpu-compute.ts. */
export const ATTEMPT_TIMEOUT_ENV = 'ATTEMPT_TIMEOUT_SECONDS';
/** EX_TEMPFAIL: the worker stopped with a checkpoint before its attempt timeout; the job definition retries it. */
export const ATTEMPT_DEADLINE_EXIT_CODE = 75;
