import { Aws, Duration, Stack } from 'aws-cdk-lib';
import type * as batch from 'aws-cdk-lib/aws-batch';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { ANY_RUN_BASE, MAX_RUN_NAME_PREFIX, RUN_ACCESS_ENV, RUN_ID_TAG, RUN_ROLE_PATH, workerKeyAccess } from '../core/run-access.ts';
import { iamLiteral, keyAccessGrants, objectReadStatements } from '../core/s3-access.ts';
import type { DataBucket } from './data-bucket.ts';
import type { InitSource } from './init-sources.ts';
import { HandlerFunction } from './node-function.ts';

export interface RunAccessProps {
  data: DataBucket;
  /** Checkpoints outside the data bucket a run may start from: the deployment's `initSources` and `baseModelUri`. */
  extraSources: readonly InitSource[];
  /** The worker's job definition, with no job role: each run registers a copy with its own (lambdas/run-access). */
  jobTemplate: batch.EcsJobDefinition;
  architecture: lambda.Architecture;
  logRetentionDays: logs.RetentionDays;
}

/**
 * A role per run for the Batch worker. Batch takes the job role from the job definition, and an ECS task's role
 * session carries nothing of its job that a policy could match, so a shared role would let one run's worker write
 * every run's checkpoints and final/ files. Instead GrantRunAccess creates a role whose inline policy names the
 * run's own keys and its base checkpoint (core/run-access.ts runPolicy) and registers the job definition with it;
 * RevokeRunAccess deletes both when Train is over. What a run role can ever do is capped by `boundary`, the same
 * key patterns for any run: the grant function can create roles only under that boundary, on one path and prefix.
 */
export class RunAccess extends Construct {
  readonly boundary: iam.ManagedPolicy;
  readonly grant: HandlerFunction;
  readonly revoke: HandlerFunction;
  /** What every run's role and job definition name starts with (unique to this construct). */
  readonly namePrefix: string;
  /** ARN pattern of the runs' job definitions: what Train may submit. */
  readonly jobDefinitions: string;
  /** The extra sources that are prefixes (their boundary grant ends in `*`), for cdk/nag.ts. */
  readonly extraSourcePrefixes: InitSource[];
  /** Revokes the rule of revokeWhenEnded could not deliver: roles left behind, to delete by hand. */
  readonly failedRevokes: sqs.Queue;

  constructor(scope: Construct, id: string, props: RunAccessProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.namePrefix = `rsclip-${this.node.addr.slice(0, 8)}-`;
    if (this.namePrefix.length > MAX_RUN_NAME_PREFIX) throw new Error(`RunAccess: name prefix ${this.namePrefix} is too long`);

    const why =
      "a run's Batch worker reads its shards, resumes from and prunes its checkpoints, writes its final/ files, and reads the base checkpoint its train.json init names (core/dataset/validate.ts initProblem); this is the permissions boundary of every run's role, whose own policy names one run id and one checkpoint (core/run-access.ts runPolicy)";
    this.boundary = new iam.ManagedPolicy(this, 'RunBoundary', {
      description: "Permissions boundary of rsclip's per-run worker roles: the most any run's role may be granted",
    });
    for (const grant of keyAccessGrants(props.data.bucket.bucketArn, workerKeyAccess('*', ANY_RUN_BASE))) {
      this.boundary.addStatements(iam.PolicyStatement.fromJson(grant.statement));
      props.data.noteWildcards(this.boundary, grant, why);
    }
    for (const source of props.extraSources) {
      for (const s of objectReadStatements(Aws.PARTITION, source.bucket, `${iamLiteral(source.key)}${source.prefix ? '*' : ''}`)) {
        this.boundary.addStatements(iam.PolicyStatement.fromJson(s));
      }
    }
    this.extraSourcePrefixes = props.extraSources.filter((s) => s.prefix);

    const roles = stack.formatArn({ service: 'iam', region: '', resource: 'role', resourceName: `${RUN_ROLE_PATH.slice(1)}${this.namePrefix}*` });
    this.jobDefinitions = stack.formatArn({ service: 'batch', resource: 'job-definition', resourceName: `${this.namePrefix}*` });
    const environment = {
      [RUN_ACCESS_ENV.account]: Aws.ACCOUNT_ID,
      [RUN_ACCESS_ENV.partition]: Aws.PARTITION,
      [RUN_ACCESS_ENV.namePrefix]: this.namePrefix,
      [RUN_ACCESS_ENV.boundaryArn]: this.boundary.managedPolicyArn,
      [RUN_ACCESS_ENV.templateJobDefinitionArn]: props.jobTemplate.jobDefinitionArn,
    };
    const common = { architecture: props.architecture, logRetentionDays: props.logRetentionDays, memorySize: 256, timeout: Duration.seconds(60), environment };
    this.grant = new HandlerFunction(this, 'Grant', { ...common, handler: 'grant-run' });
    this.revoke = new HandlerFunction(this, 'Revoke', { ...common, handler: 'revoke-run' });
    const withBoundary = { StringEquals: { 'iam:PermissionsBoundary': this.boundary.managedPolicyArn } };
    const describe = new iam.PolicyStatement({ actions: ['batch:DescribeJobDefinitions'], resources: ['*'] });

    this.grant.addToRolePolicy(new iam.PolicyStatement({ actions: ['iam:CreateRole', 'iam:PutRolePolicy'], resources: [roles], conditions: withBoundary }));
    this.grant.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['iam:TagRole'],
        resources: [roles],
        conditions: { 'ForAllValues:StringEquals': { 'aws:TagKeys': [RUN_ID_TAG] } },
      }),
    );
    this.grant.addToRolePolicy(new iam.PolicyStatement({ actions: ['iam:GetRole'], resources: [roles] }));
    // RegisterJobDefinition passes the run's role as the job role and the template's execution role (image pulls, logs).
    const executionRole = props.jobTemplate.container.executionRole;
    this.grant.addToRolePolicy(new iam.PolicyStatement({ actions: ['iam:PassRole'], resources: [roles, executionRole.roleArn] }));
    // TagResource: a template with tags (stack tags propagate to it) is registered with them, which Batch authorizes as a tagging.
    this.grant.addToRolePolicy(new iam.PolicyStatement({ actions: ['batch:RegisterJobDefinition', 'batch:TagResource'], resources: [this.jobDefinitions] }));
    this.grant.addToRolePolicy(describe);

    this.revoke.addToRolePolicy(new iam.PolicyStatement({ actions: ['iam:DeleteRolePolicy'], resources: [roles], conditions: withBoundary }));
    this.revoke.addToRolePolicy(new iam.PolicyStatement({ actions: ['iam:DeleteRole'], resources: [roles] }));
    this.revoke.addToRolePolicy(new iam.PolicyStatement({ actions: ['batch:DeregisterJobDefinition'], resources: [this.jobDefinitions] }));
    this.revoke.addToRolePolicy(describe);

    this.failedRevokes = new sqs.Queue(this, 'FailedRevokes', { enforceSSL: true, retentionPeriod: Duration.days(14) });
  }

  /**
   * Revokes the run of every execution of `machine` that ends FAILED, ABORTED or TIMED_OUT (the execution's name is
   * its run id): an aborted or timed-out execution runs no further state, and a revoke is safe to repeat.
   */
  revokeWhenEnded(machine: sfn.IStateMachine): events.Rule {
    const rule = new events.Rule(this, 'EndedRuns', {
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: { status: ['FAILED', 'ABORTED', 'TIMED_OUT'], stateMachineArn: [machine.stateMachineArn] },
      },
    });
    rule.addTarget(
      new targets.LambdaFunction(this.revoke, {
        event: events.RuleTargetInput.fromObject({ runId: events.EventField.fromPath('$.detail.name') }),
        retryAttempts: 8,
        maxEventAge: Duration.hours(6),
        deadLetterQueue: this.failedRevokes,
      }),
    );
    return rule;
  }
}
