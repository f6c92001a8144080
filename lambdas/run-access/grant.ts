import { z } from 'zod';
import {
  MAX_ROLE_POLICY_CHARS,
  RUN_ID_TAG,
  RUN_POLICY_NAME,
  RUN_ROLE_PATH,
  RunAccessError,
  runAccessName,
  runPolicy,
  runAccessConfig,
  runRoleTrust,
  type RunAccessConfig,
} from '../../core/run-access.ts';
import { RunSpecSchema, type RunSpec } from '../../core/run-spec.ts';
import type { JobDefinition, RegisterJobDefinitionRequest, RunAccount } from './account.ts';

/** What the Train step submits: the run's job definition, whose job role is the run's own. */
export interface RunAccess {
  roleName: string;
  roleArn: string;
  jobDefinitionArn: string;
}

/**
 * The deployment's worker job definition (the template CDK registers, with no job role) as the run's: same
 * image, resources, logging, timeout and retry strategy, under the run's name and with the run's role.
 */
export function runJobDefinition(template: JobDefinition, name: string, roleArn: string): RegisterJobDefinitionRequest {
  if (!template.containerProperties) throw new RunAccessError(`job definition ${template.jobDefinitionArn} has no containerProperties`);
  return {
    jobDefinitionName: name,
    type: template.type as RegisterJobDefinitionRequest['type'],
    parameters: template.parameters,
    schedulingPriority: template.schedulingPriority,
    containerProperties: { ...template.containerProperties, jobRoleArn: roleArn },
    retryStrategy: template.retryStrategy,
    timeout: template.timeout,
    propagateTags: template.propagateTags,
    platformCapabilities: template.platformCapabilities,
    tags: template.tags,
  };
}

/**
 * Creates the run's role (under RUN_ROLE_PATH, capped by the boundary, trusted by this account's ECS tasks) with
 * `runPolicy` inline, and registers the run's job definition with it. Safe to retry: an existing role is reused
 * and its policy rewritten, and Batch adds a revision.
 */
export async function grantRun(account: RunAccount, config: RunAccessConfig, spec: RunSpec): Promise<RunAccess> {
  const document = JSON.stringify(runPolicy(spec, config.partition));
  if (document.length > MAX_ROLE_POLICY_CHARS) {
    throw new RunAccessError(`run ${spec.runId}: its role policy is ${document.length} characters, over IAM's ${MAX_ROLE_POLICY_CHARS} (the base model's key is too long)`);
  }
  const template = await account.jobDefinition(config.templateJobDefinitionArn);
  if (!template) throw new RunAccessError(`the worker's job definition ${config.templateJobDefinitionArn} does not exist`);
  const roleName = runAccessName(config.namePrefix, spec.runId);
  const roleArn = await account.createRole({
    name: roleName,
    path: RUN_ROLE_PATH,
    trust: runRoleTrust(config.account),
    boundaryArn: config.boundaryArn,
    description: `rsclip: the Batch worker of run ${spec.runId}`,
    tags: [{ Key: RUN_ID_TAG, Value: spec.runId }],
  });
  await account.putRolePolicy(roleName, RUN_POLICY_NAME, document);
  const jobDefinitionArn = await account.registerJobDefinition(runJobDefinition(template, roleName, roleArn));
  return { roleName, roleArn, jobDefinitionArn };
}

const GrantInput = z.object({ runSpec: RunSpecSchema });

/** The GrantRunAccess step's handler on `account` (AWS in lambdas/grant-run, in-memory in the local runner). */
export const grantHandler =
  (account: RunAccount, config: () => RunAccessConfig = () => runAccessConfig(process.env)) =>
  (input: unknown): Promise<RunAccess> =>
    grantRun(account, config(), GrantInput.parse(input).runSpec);
