import { Logger } from '@aws-lambda-powertools/logger';
import { awsRunAccount } from '../run-access/account.ts';
import { grantHandler, type RunAccess } from '../run-access/grant.ts';

const logger = new Logger();
const grant = grantHandler(awsRunAccount());

/** GrantRunAccess: the run's own role and job definition, before Train submits the job. */
export async function handler(input: unknown): Promise<RunAccess> {
  const access = await grant(input);
  logger.info('run access granted', { role: access.roleArn, jobDefinition: access.jobDefinitionArn });
  return access;
}
