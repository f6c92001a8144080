import { Stack, Token, Validations, type CfnElement } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import { captionsKey, DATASETS } from '../core/s3-layout.ts';
import { TMP_SEGMENT } from '../core/store.ts';
import type { Pipeline } from './pipeline.ts';

function acknowledge(scope: IConstruct, finding: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `AwsSolutions-${finding}`, reason });
}

/** `<LogicalId>` as cdk-nag prints a Ref inside a finding's ID. */
function ref(construct: IConstruct): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement);
}

/**
 * cdk-nag (AwsSolutions) findings that remain after the fixes (state machine logs ALL, VPC flow logs, Node 24
 * Lambdas, access logs, TLS-only bucket and topic), each acknowledged by its full ID with the reason it stays.
 */
export function acknowledgeNagFindings(stack: Stack, pipeline: Pipeline): void {
  // An environment-agnostic stack prints pseudo parameters; one with an env prints the values.
  const region = Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region;
  const account = Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account;
  acknowledge(
    stack,
    'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    'Lambda execution roles (ours and the CDK bucket-notification helper) only get CloudWatch Logs writes from it.',
  );
  acknowledge(
    stack,
    'IAM5[Resource::*]',
    'Actions without resource-level permissions: X-Ray PutTraceSegments/PutTelemetryRecords, ecr:GetAuthorizationToken, batch:DescribeJobs.',
  );
  const grantReason = 'From bucket.grantRead/grantPut/grantDelete, each scoped to one key prefix of the data bucket.';
  for (const action of ['GetObject*', 'GetBucket*', 'List*', 'Abort*', 'DeleteObject*']) {
    acknowledge(stack, `IAM5[Action::s3:${action}]`, grantReason);
  }
  const bucket = ref(pipeline.data.bucket);
  for (const prefix of [DATASETS, 'runs', 'models', TMP_SEGMENT]) {
    acknowledge(
      stack,
      `IAM5[Resource::<${bucket}.Arn>/${prefix}/*]`,
      `Objects under ${prefix}/ are named at run time (layout in core/s3-layout.ts); access is limited to that prefix.`,
    );
  }

  acknowledge(
    pipeline.functions.publish,
    `IAM5[Resource::<${bucket}.Arn>/${captionsKey('*')}]`,
    "Publish reads the upload time of a run's captions.csv version, whichever dataset the run is of.",
  );

  acknowledge(
    pipeline.trigger.failedEvents,
    'SQS3',
    "This queue is the upload rule's dead-letter queue (EventBridge target DLQ), which the rule cannot express as a redrive policy.",
  );

  const workflow = pipeline.workflow;
  for (const fn of [pipeline.functions.validate, pipeline.functions.shard, pipeline.functions.collect, pipeline.functions.publish]) {
    acknowledge(workflow, `IAM5[Resource::<${ref(fn)}.Arn>:*]`, 'LambdaInvoke grants every version and alias of this one function.');
  }
  acknowledge(
    workflow,
    `IAM5[Resource::arn:<AWS::Partition>:s3:::<${bucket}>/*]`,
    'The Distributed Map ItemReader reads the shard plan, whose key (runs/<runId>/shard-plan.json) is chosen at run time.',
  );
  const machine = `{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"${ref(workflow.stateMachine)}"}]}]}`;
  const executions = `arn:<AWS::Partition>:states:${region}:${account}:execution:${machine}`;
  for (const resource of [`${executions}:*`, `${executions}/*:*`]) {
    acknowledge(workflow, `IAM5[Resource::${resource}]`, 'The Distributed Map manages the child executions of this state machine only.');
  }

  if (pipeline.gpu) {
    acknowledge(
      workflow,
      `IAM5[Resource::arn:<AWS::Partition>:batch:${region}:${account}:job-definition/*]`,
      'BatchSubmitJob grants all revisions of the job definition: each deploy registers a new revision.',
    );
    acknowledge(
      pipeline.gpu,
      'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]',
      'The standard ECS container-instance role Batch needs to register GPU hosts with its ECS cluster.',
    );
  }
}
