import { main } from '../../worker/main.ts';
import { z } from 'zod';
import { userErrors } from '../flags.ts';
import { defineCommand, option } from '../command.ts';

export default defineCommand({
  name: 'worker',
  summary: 'run the Train worker: RUN_SPEC [+ TASK_TOKEN] from the environment, or an activity worker (--activity-arn ARN)',
  flags: { 'activity-arn': option('ARN', 'poll this Step Functions activity for runs (default: ACTIVITY_ARN)', z.string().optional()) },
  async run(f) {
    return userErrors(() => main(process.env, f['activity-arn'] ?? process.env.ACTIVITY_ARN));
  },
});
