import { Logger } from '@aws-lambda-powertools/logger';
import { awsRunAccount } from '../run-access/account.ts';
import { revokeHandler, type Revoked } from '../run-access/revoke.ts';

const logger = new Logger();
const revoke = revokeHandler(awsRunAccount());

/** RevokeRunAccess, RevokeAfterFailure and the ended-runs rule: the run's role and job definitions, deleted. */
export async function handler(input: unknown): Promise<Revoked> {
  const revoked = await revoke(input);
  logger.info('run access revoked', { ...revoked });
  return revoked;
}
