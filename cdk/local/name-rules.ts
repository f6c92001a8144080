/**
 * AWS naming rules that aws-local-stepfunctions does not apply: the local runner checks them where AWS would, so a
 * run that AWS refuses fails here too, with the rule named.
 */

/** SubmitJob's jobName: 1-128 letters, digits, hyphens and underscores, the first a letter or digit. */
const BATCH_JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
/** StartExecution's name as the trigger makes it: 1-80 of [A-Za-z0-9_-] (what every execution type accepts). */
const EXECUTION_NAME = /^[A-Za-z0-9_-]{1,80}$/;

const refused = (name: string, message: string) => Object.assign(new Error(message), { name });

export function checkBatchJobName(jobName: unknown): void {
  if (typeof jobName !== 'string' || !BATCH_JOB_NAME.test(jobName)) {
    throw refused(
      'Batch.ClientException',
      `SubmitJob: job name ${JSON.stringify(jobName)} breaks AWS Batch's rule (1-128 letters, digits, '-' and '_', starting with a letter or digit)`,
    );
  }
}

export function checkExecutionName(name: string): void {
  if (!EXECUTION_NAME.test(name)) {
    throw refused('InvalidName', `StartExecution: execution name ${JSON.stringify(name)} breaks Step Functions' rule (1-80 of letters, digits, '-' and '_')`);
  }
}
