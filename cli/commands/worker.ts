import { main } from '../../worker/main.ts';
import { parseFlags, userErrors } from '../flags.ts';
import type { Command } from '../command.ts';

const command: Command = {
  summary: 'run the Train worker: RUN_SPEC [+ TASK_TOKEN] from the environment, or an activity worker (--activity-arn ARN)',
  async run(argv) {
    const f = parseFlags(argv, { 'activity-arn': { type: 'string' } }, 'worker [--activity-arn ARN]');
    return userErrors(() => main(process.env, f['activity-arn'] ?? process.env.ACTIVITY_ARN));
  },
};

export default command;
