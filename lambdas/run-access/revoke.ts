import { z } from 'zod';
import { RUN_POLICY_NAME, runAccessConfig, runAccessName, type RunAccessConfig } from '../../core/run-access.ts';
import { RunSpecSchema } from '../../core/run-spec.ts';
import type { RunAccount } from './account.ts';

export interface Revoked {
  runId: string;
  /** Whether there was a role to delete (false: never granted, or revoked before). */
  role: boolean;
  jobDefinitions: number;
}

/** Deregisters the run's job definitions and deletes its role: what grantRun made, whatever of it exists. */
export async function revokeRun(account: RunAccount, config: RunAccessConfig, runId: string): Promise<Revoked> {
  const name = runAccessName(config.namePrefix, runId);
  const definitions = await account.activeJobDefinitions(name);
  for (const arn of definitions) await account.deregisterJobDefinition(arn);
  await account.deleteRolePolicy(name, RUN_POLICY_NAME);
  const role = await account.deleteRole(name);
  return { runId, role, jobDefinitions: definitions.length };
}

const RevokeInput = z.object({ runId: RunSpecSchema.shape.runId });

/**
 * The handler of the RevokeRunAccess steps (after Train, and first on the failure path) and of the rule for
 * executions that end without reaching either (aborted, timed out): `{ runId }` in each case.
 */
export const revokeHandler =
  (account: RunAccount, config: () => RunAccessConfig = () => runAccessConfig(process.env)) =>
  (input: unknown): Promise<Revoked> =>
    revokeRun(account, config(), RevokeInput.parse(input).runId);
