import { z } from 'zod';
import type { InitRule } from '../../core/dataset/validate.ts';

/**
 * The Validate function's environment variable with the deployment's extra `init` sources (a JSON array of s3://
 * URIs, `[]` for none), set by cdk/ingest-functions.ts from the same list the Batch job role's read grant is built
 * from. Unset, only the built-in sources pass (core/dataset/validate.ts initProblem); the local runner sets
 * `["*"]` (ANY_INIT_SOURCE), since locally there is no IAM boundary and the worker reads the user's own files.
 */
export const INIT_SOURCES_ENV = 'RSCLIP_INIT_SOURCES';

const Sources = z.array(z.string().min(1));

export function initRuleFromEnv(bucket: string, env: NodeJS.ProcessEnv = process.env): InitRule {
  const raw = env[INIT_SOURCES_ENV];
  if (raw === undefined || raw === '') return { bucket, sources: [] };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new Error(`${INIT_SOURCES_ENV} is not JSON: ${(e as Error).message}`);
  }
  const parsed = Sources.safeParse(json);
  if (!parsed.success) throw new Error(`${INIT_SOURCES_ENV} must be a JSON array of s3:// URIs, got ${raw}`);
  return { bucket, sources: parsed.data };
}
