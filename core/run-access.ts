import { createHash } from 'node:crypto';
import { INIT_CHECKPOINT_SUFFIXES, INIT_LATEST } from './train-options.ts';
import type { RunSpec } from './run-spec.ts';
import { iamLiteral, iamPolicy, keyAccessGrants, objectReadStatements, type IamPolicy, type KeyAccess } from './s3-access.ts';
import { CHECKPOINTS, datasetPrefix, FINAL, FINAL_FILES, finalKey, MODELS, runPrefix, shardsPrefix } from './s3-layout.ts';

/**
 * What the Batch worker of one run may touch, and the names of the role and job definition that carry it. Each run
 * gets a role of its own (lambdas/run-access), whose policy is `runPolicy` of its RunSpec, capped by a permissions
 * boundary that is `workerKeyAccess` for every run (cdk/run-access.ts): a worker reaches only its own run's keys.
 */

/**
 * A worker's keys in the data bucket: its run's shards, checkpoints (resume, pruning) and final/ files, and the
 * base checkpoints it may start from (key patterns: exactly one key for one run, every allowed kind for the boundary).
 */
export function workerKeyAccess(runId: string, base: readonly string[]): KeyAccess {
  const shards = `${shardsPrefix(runId)}/*`;
  const checkpoints = `${runPrefix(runId)}/${CHECKPOINTS}/*`;
  return {
    list: [shards, checkpoints, ...base],
    read: [shards, checkpoints, ...base],
    write: [checkpoints, `${runPrefix(runId)}/${FINAL}/*`],
    delete: [checkpoints],
  };
}

/**
 * What any run may start from: what core/dataset/validate.ts initProblem allows (anything under models/, a checkpoint
 * file in a dataset's folder) and what `init: latest` resolves to (a run's published final/model.safetensors). With
 * run id `*`, the permissions boundary of every run's role.
 */
export const ANY_RUN_BASE: readonly string[] = [
  `${MODELS}/*`,
  ...INIT_CHECKPOINT_SUFFIXES.map((suffix) => `${datasetPrefix('*')}/*${suffix}`),
  finalKey('*', FINAL_FILES.model),
];

/** The checkpoint the worker of `spec` loads (worker/train/run.ts: train.json's init over the deployment's). */
export const baseOf = (spec: RunSpec): string | undefined => spec.options.init ?? spec.baseModel;

/** One run's policy on `partition`: its own keys, and exactly the base checkpoint it starts from (latest resolved). */
export function runPolicy(spec: RunSpec, partition: string): IamPolicy {
  const base = baseOf(spec);
  // Validate resolves it (core/latest-model.ts resolveLatestInit): a run's role names one model.
  if (base === INIT_LATEST) throw new RunAccessError(`run ${spec.runId}: init "latest" must be resolved before its policy is made`);
  const reads: string[] = [];
  const external: { bucket: string; key: string }[] = [];
  const s3 = base === undefined ? undefined : /^s3:\/\/([^/]+)\/(.+)$/.exec(base);
  if (s3 && s3[1] === spec.bucket) reads.push(iamLiteral(s3[2]!));
  else if (s3) external.push({ bucket: s3[1]!, key: iamLiteral(s3[2]!) });
  // Otherwise random:<config>, or a path on the worker's disk (the local runner; Validate refuses it on AWS): no S3.
  const bucketArn = `arn:${partition}:s3:::${spec.bucket}`;
  return iamPolicy([
    ...keyAccessGrants(bucketArn, workerKeyAccess(iamLiteral(spec.runId), reads)).map((g) => g.statement),
    ...external.flatMap((o) => objectReadStatements(partition, o.bucket, o.key)),
  ]);
}

export class RunAccessError extends Error {
  override name = 'RunAccessError';
}

/** IAM's quota on a role's inline policies, counted without whitespace (JSON.stringify writes none). */
export const MAX_ROLE_POLICY_CHARS = 10_240;
/** Where run roles live; the grant and revoke functions may touch roles under this path only. */
export const RUN_ROLE_PATH = '/rsclip/runs/';
export const RUN_POLICY_NAME = 'run';
/** Tag on a run's role: which run it serves (tag values allow the run id's characters). */
export const RUN_ID_TAG = 'rsclip:runId';

/**
 * The name of a run's role and of its job definition: the deployment's prefix (cdk/run-access.ts, unique to its
 * construct) and a hash of the run id (IAM role names end at 64 characters, Batch names refuse `.`).
 */
export const runAccessName = (prefix: string, runId: string): string =>
  `${prefix}${createHash('sha256').update(runId).digest('hex').slice(0, 32)}`;
/** Longest prefix cdk/run-access.ts may choose: the name must fit IAM's 64 characters. */
export const MAX_RUN_NAME_PREFIX = 64 - 32;

/** What the grant and revoke functions are configured with (cdk/run-access.ts sets these variables). */
export const RUN_ACCESS_ENV = {
  account: 'RUN_ACCESS_ACCOUNT',
  partition: 'RUN_ACCESS_PARTITION',
  namePrefix: 'RUN_ACCESS_NAME_PREFIX',
  boundaryArn: 'RUN_ACCESS_BOUNDARY_ARN',
  templateJobDefinitionArn: 'RUN_ACCESS_JOB_TEMPLATE_ARN',
} as const;

export type RunAccessConfig = Record<keyof typeof RUN_ACCESS_ENV, string>;

export function runAccessConfig(env: Record<string, string | undefined>): RunAccessConfig {
  const entries = Object.entries(RUN_ACCESS_ENV).map(([field, variable]) => {
    const value = env[variable];
    if (!value) throw new Error(`${variable} is not set (cdk/run-access.ts sets it on the grant and revoke functions)`);
    return [field, value] as const;
  });
  return Object.fromEntries(entries) as RunAccessConfig;
}

/** ECS tasks of this account only may assume a run's role (the confused-deputy condition ECS documents). */
export function runRoleTrust(account: string): object {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Principal: { Service: 'ecs-tasks.amazonaws.com' },
        Action: 'sts:AssumeRole',
        Condition: { StringEquals: { 'aws:SourceAccount': account } },
      },
    ],
  };
}
