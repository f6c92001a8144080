import { Stack, Token, Validations, type CfnElement } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import { RUN_ROLE_PATH } from '../core/run-access.ts';
import { shardPlanKey, shardResultsPrefix } from '../core/s3-layout.ts';
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
  const functions = [pipeline.functions.validate, pipeline.functions.shard, pipeline.functions.collect, pipeline.functions.publish];
  for (const fn of [...functions, pipeline.trigger.function]) {
    acknowledge(fn, 'IAM5[Resource::*]', 'X-Ray tracing: xray:PutTraceSegments and PutTelemetryRecords have no resource-level permissions.');
  }

  // Every data-bucket grant names one key pattern of core/s3-layout.ts, with `*` where a run id or dataset name
  // is chosen at run time; the reason says which role uses it for what (DataBucket.grantKeys).
  const bucket = ref(pipeline.data.bucket);
  const reasons = new Map<IConstruct, Map<string, string[]>>();
  for (const g of pipeline.data.wildcardGrants) {
    const byPattern = reasons.get(g.scope) ?? new Map<string, string[]>();
    reasons.set(g.scope, byPattern);
    byPattern.set(g.pattern, [...(byPattern.get(g.pattern) ?? []), g.reason]);
  }
  for (const [scope, byPattern] of reasons) {
    for (const [pattern, why] of byPattern) {
      acknowledge(scope, `IAM5[Resource::<${bucket}.Arn>/${pattern}]`, `Only keys matching ${pattern} (named at run time): ${why.join('; ')}.`);
    }
  }

  acknowledge(
    pipeline.trigger.failedEvents,
    'SQS3',
    "This queue is the upload rule's dead-letter queue (EventBridge target DLQ), which the rule cannot express as a redrive policy.",
  );

  const workflow = pipeline.workflow;
  for (const fn of functions) {
    acknowledge(workflow, `IAM5[Resource::<${ref(fn)}.Arn>:*]`, 'LambdaInvoke grants every version and alias of this one function.');
  }
  acknowledge(
    workflow,
    `IAM5[Resource::<${bucket}.Arn>/${shardPlanKey('*')}]`,
    'The Distributed Map ItemReader reads the shard plan Validate wrote, runs/<runId>/shard-plan.json, for the run id chosen at run time.',
  );
  acknowledge(
    workflow,
    `IAM5[Resource::<${bucket}.Arn>/${shardResultsPrefix('*')}/*]`,
    "The Distributed Map ResultWriter writes the Shard items' results under runs/<runId>/shard-results/, for the run id chosen at run time.",
  );
  acknowledge(
    workflow,
    'IAM5[Resource::*]',
    'No resource-level permissions: X-Ray trace writes, the CloudWatch Logs vended-delivery actions of state machine logging (logs:CreateLogDelivery and the rest), and batch:DescribeJobs for the Train step.',
  );
  const machine = `{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"${ref(workflow.stateMachine)}"}]}]}`;
  const executions = `arn:<AWS::Partition>:states:${region}:${account}:execution:${machine}`;
  for (const resource of [`${executions}:*`, `${executions}/*:*`]) {
    acknowledge(workflow, `IAM5[Resource::${resource}]`, 'The Distributed Map manages the child executions of this state machine only.');
  }

  if (pipeline.gpu) {
    acknowledge(
      workflow,
      `IAM5[Resource::arn:<AWS::Partition>:batch:${region}:${account}:job/*]`,
      'batch:TerminateJob stops the Train job when the execution is stopped; a job id exists only once SubmitJob returns it.',
    );
    acknowledge(
      pipeline.gpu,
      'IAM5[Resource::*]',
      'ecr:GetAuthorizationToken (the Batch execution role pulling the worker image) has no resource-level permissions.',
    );
    acknowledge(
      pipeline.gpu,
      'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]',
      'The standard ECS container-instance role Batch needs to register GPU hosts with its ECS cluster.',
    );
  }
  const access = pipeline.runAccess;
  if (access) {
    for (const source of access.extraSourcePrefixes) {
      acknowledge(
        access.boundary,
        `IAM5[Resource::arn:<AWS::Partition>:s3:::${source.bucket}/${source.key}*]`,
        `${source.uri} is one of the deployment's initSources: a run's worker may read the checkpoint its train.json init names under it (its own role names that one object).`,
      );
    }
    const roles = `IAM5[Resource::arn:<AWS::Partition>:iam::${account}:role${RUN_ROLE_PATH}${access.namePrefix}*]`;
    const definitions = `IAM5[Resource::arn:<AWS::Partition>:batch:${region}:${account}:job-definition/${access.namePrefix}*]`;
    const runNamed = 'named after the run id at run time (core/run-access.ts runAccessName), under this deployment\'s prefix';
    acknowledge(access.grant, roles, `The run roles, ${runNamed}: created only with the run boundary attached (iam:PermissionsBoundary condition), tagged with the run id, passed to Batch.`);
    acknowledge(access.revoke, roles, `The run roles, ${runNamed}: their policy and the role are deleted when the run ends.`);
    acknowledge(access.grant, definitions, `The run job definitions, ${runNamed}: registered with the run's role.`);
    acknowledge(access.revoke, definitions, `The run job definitions, ${runNamed}: deregistered when the run ends.`);
    acknowledge(workflow, definitions, `Train submits the run's own job definition, ${runNamed}; only the grant function registers those, each with a run role under the boundary.`);
    for (const fn of [access.grant, access.revoke]) {
      acknowledge(fn, 'IAM5[Resource::*]', 'No resource-level permissions: X-Ray trace writes and batch:DescribeJobDefinitions.');
      acknowledge(workflow, `IAM5[Resource::<${ref(fn)}.Arn>:*]`, 'LambdaInvoke grants every version and alias of this one function.');
    }
    acknowledge(access.failedRevokes, 'SQS3', "This queue is the ended-runs rule's dead-letter queue (EventBridge target DLQ), which the rule cannot express as a redrive policy.");
  }
}
