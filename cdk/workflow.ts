import { Duration, Stack } from 'aws-cdk-lib';
import type * as batch from 'aws-cdk-lib/aws-batch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { shardPlanKey, shardResultsPrefix } from '../core/s3-layout.ts';
import type { DataBucket } from './data-bucket.ts';
import type { IngestFunctions } from './ingest-functions.ts';
import type { RunAccess } from './run-access.ts';

/**
 * Where Train runs: a Batch GPU job (AWS) under a role and job definition of the run's own (`access`), or an
 * Activity polled by `rsclip worker` (LocalStack).
 */
export type TrainTarget =
  | { kind: 'batch'; queue: batch.IJobQueue; access: RunAccess }
  | { kind: 'activity'; activity: sfn.IActivity };

export interface WorkflowProps {
  data: DataBucket;
  functions: IngestFunctions;
  train: TrainTarget;
  /** RunSpec.baseModel: the checkpoint a run starts from when train.json sets no `init`. */
  baseModelUri?: string;
  notificationEmail?: string;
  shardConcurrency: number;
  toleratedShardFailurePercent: number;
  /** Longest one training attempt may run; the whole execution gets every attempt's and 2 hours more. */
  trainTimeout: Duration;
  /** Batch attempts of the Train job (1 for the activity worker). */
  trainAttempts?: number;
  logRetentionDays: logs.RetentionDays;
}

/**
 * The state names are part of the contract with cdk/local (overrides are keyed by name) and the tests.
 * Input: `{ bucket, key, runId }` from the trigger.
 */
export const STATE = {
  validate: 'Validate',
  shard: 'Shard',
  shardOne: 'ShardOne',
  collect: 'Collect',
  runSpec: 'BuildRunSpec',
  grantRunAccess: 'GrantRunAccess',
  awaitRunRole: 'AwaitRunRole',
  train: 'Train',
  revokeRunAccess: 'RevokeRunAccess',
  revokeAfterFailure: 'RevokeAfterFailure',
  publish: 'Publish',
  notifySuccess: 'NotifySuccess',
  notifyFailure: 'NotifyFailure',
  succeeded: 'Succeeded',
  failed: 'Failed',
} as const;

const LAMBDA_TIMEOUT = sfn.Timeout.duration(Duration.minutes(15));
/**
 * IAM is eventually consistent: a role just created may not yet be assumable by ECS (IAM User Guide,
 * troubleshooting "Changes that I make are not always immediately visible"; seconds, typically).
 */
export const RUN_ROLE_PROPAGATION = Duration.seconds(10);
/** What IAM and Batch answer when busy, as the grant and revoke functions throw it (the SDK's own retries spent). */
const CONTROL_PLANE_RETRY: sfn.RetryProps = {
  errors: ['ThrottlingException', 'ServiceFailureException', 'ConcurrentModificationException', 'ServerException', 'TooManyRequestsException'],
  interval: Duration.seconds(5),
  backoffRate: 2,
  maxAttempts: 5,
  jitterStrategy: sfn.JitterType.FULL,
};

export class Workflow extends Construct {
  readonly stateMachine: sfn.StateMachine;
  readonly topic: sns.Topic;

  constructor(scope: Construct, id: string, props: WorkflowProps) {
    super(scope, id);
    // ResultWriterV2 (bucket and prefix as Parameters) is behind this flag; set before any child exists.
    this.node.setContext('@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2', true);
    const { bucket } = props.data;
    this.topic = new sns.Topic(this, 'Notifications', {
      enforceSSL: true,
      masterKey: kms.Alias.fromAliasName(this, 'SnsKey', 'alias/aws/sns'),
    });
    if (props.notificationEmail) this.topic.addSubscription(new subscriptions.EmailSubscription(props.notificationEmail));

    const notifyFailure = new tasks.SnsPublish(this, STATE.notifyFailure, {
      topic: this.topic,
      subject: 'rsclip: run failed',
      message: sfn.TaskInput.fromObject({
        runId: sfn.JsonPath.stringAt('$.runId'),
        error: sfn.JsonPath.stringAt('$.error.Error'),
        cause: sfn.JsonPath.stringAt('$.error.Cause'),
      }),
      resultPath: sfn.JsonPath.DISCARD,
    });
    notifyFailure.addRetry({ maxAttempts: 3 });
    const failed = new sfn.Fail(this, STATE.failed, { errorPath: '$.error.Error', causePath: '$.error.Cause' });
    notifyFailure.next(failed);
    const access = props.train.kind === 'batch' ? props.train.access : undefined;
    const revokeStep = (id: string) =>
      lambdaStep(this, id, access!.revoke, sfn.TaskInput.fromObject({ runId: sfn.JsonPath.stringAt('$.runId') }), sfn.JsonPath.DISCARD).addRetry(
        CONTROL_PLANE_RETRY,
      );
    // Whatever failed, the run's role goes first (a revoke of what was never granted finds nothing); a failed revoke
    // still notifies, with the run's own error (the ended-runs rule of cdk/run-access.ts tries it again).
    let onFailure: sfn.IChainable = notifyFailure;
    if (access) {
      const revokeAfterFailure = revokeStep(STATE.revokeAfterFailure);
      revokeAfterFailure.addCatch(notifyFailure, { resultPath: '$.revokeError' });
      onFailure = revokeAfterFailure.next(notifyFailure);
    }
    const catchAll = { resultPath: '$.error' };

    const validate = lambdaStep(this, STATE.validate, props.functions.validate);
    validate.addCatch(onFailure, catchAll);

    const shardOne = lambdaStep(this, STATE.shardOne, props.functions.shard);
    // Each item rewrites the same shard key, so a retry is safe.
    shardOne.addRetry({
      errors: [sfn.Errors.TASKS_FAILED],
      interval: Duration.seconds(5),
      backoffRate: 2,
      maxAttempts: 3,
      jitterStrategy: sfn.JitterType.FULL,
    });
    const shard = new sfn.DistributedMap(this, STATE.shard, {
      itemReader: new ShardPlanReader({ bucket, key: sfn.JsonPath.stringAt('$.planKey') }),
      maxConcurrency: props.shardConcurrency,
      toleratedFailurePercentage: props.toleratedShardFailurePercent,
      // Without a writer, Step Functions gathers every item's result into the state (256 KiB: ~1,200 shards) even
      // when ResultPath discards them; written to S3, the state gets only where they are.
      resultWriterV2: new ShardResultsWriter({ bucket, prefix: sfn.JsonPath.stringAt('$.shardResultsPrefix') }),
      resultPath: sfn.JsonPath.DISCARD,
    });
    shard.itemProcessor(shardOne);
    shard.addCatch(onFailure, catchAll);

    // The images' problems, found by the Shard items, decide the run under its policy here.
    const collect = lambdaStep(
      this,
      STATE.collect,
      props.functions.collect,
      sfn.TaskInput.fromObject({
        runId: sfn.JsonPath.stringAt('$.runId'),
        bucket: sfn.JsonPath.stringAt('$.bucket'),
        dataset: sfn.JsonPath.stringAt('$.dataset'),
        shards: sfn.JsonPath.numberAt('$.shards'),
      }),
      '$.collected',
    );
    collect.addCatch(onFailure, catchAll);

    const runSpec = new sfn.Pass(this, STATE.runSpec, {
      parameters: {
        'runId.$': '$.runId',
        'bucket.$': '$.bucket',
        'dataset.$': '$.dataset',
        'options.$': '$.options',
        ...(props.baseModelUri ? { baseModel: props.baseModelUri } : {}),
      },
      resultPath: '$.runSpec',
    });

    const train = this.trainStep(props);
    train.addCatch(onFailure, catchAll);
    let training: sfn.IChainable = train;
    if (access) {
      const grant = lambdaStep(this, STATE.grantRunAccess, access.grant, sfn.TaskInput.fromObject({ runSpec: sfn.JsonPath.objectAt('$.runSpec') }), '$.access');
      grant.addRetry(CONTROL_PLANE_RETRY).addCatch(onFailure, catchAll);
      const revoke = revokeStep(STATE.revokeRunAccess);
      revoke.addCatch(onFailure, catchAll);
      training = grant
        .next(new sfn.Wait(this, STATE.awaitRunRole, { time: sfn.WaitTime.duration(RUN_ROLE_PROPAGATION) }))
        .next(train)
        .next(revoke);
    }

    const publish = lambdaStep(
      this,
      STATE.publish,
      props.functions.publish,
      sfn.TaskInput.fromObject({
        runId: sfn.JsonPath.stringAt('$.runId'),
        bucket: sfn.JsonPath.stringAt('$.bucket'),
        dataset: sfn.JsonPath.stringAt('$.dataset'),
        // What orders runs for latest.json: the captions.csv version the run read, and when it started.
        trigger: sfn.JsonPath.objectAt('$$.Execution.Input'),
        startedAt: sfn.JsonPath.stringAt('$$.Execution.StartTime'),
      }),
      '$.published',
    );
    publish.addCatch(onFailure, catchAll);

    const notifySuccess = new tasks.SnsPublish(this, STATE.notifySuccess, {
      topic: this.topic,
      subject: 'rsclip: model published',
      message: sfn.TaskInput.fromObject({
        runId: sfn.JsonPath.stringAt('$.runId'),
        dataset: sfn.JsonPath.stringAt('$.dataset'),
        model: sfn.JsonPath.stringAt('$.published.model'),
        sha256: sfn.JsonPath.stringAt('$.published.sha256'),
      }),
      resultPath: sfn.JsonPath.DISCARD,
    });
    notifySuccess.addRetry({ maxAttempts: 3 });

    const definition = validate
      .next(shard)
      .next(collect)
      .next(runSpec)
      .next(training)
      .next(publish)
      .next(notifySuccess)
      .next(new sfn.Succeed(this, STATE.succeeded, { outputPath: '$.published' }));

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      // Every Train attempt may use its whole timeout (a spot reclaim or a stop before the deadline starts another).
      timeout: Duration.seconds(props.trainTimeout.toSeconds() * (props.trainAttempts ?? 1)).plus(Duration.hours(2)),
      tracingEnabled: true,
      logs: {
        destination: new logs.LogGroup(this, 'Logs', { retention: props.logRetentionDays }),
        level: sfn.LogLevel.ALL,
        includeExecutionData: true,
      },
    });
  }

  private trainStep(props: WorkflowProps): tasks.BatchSubmitJob | tasks.StepFunctionsInvokeActivity {
    if (props.train.kind === 'activity') {
      return new tasks.StepFunctionsInvokeActivity(this, STATE.train, {
        activity: props.train.activity,
        inputPath: '$.runSpec',
        resultPath: '$.train',
        taskTimeout: sfn.Timeout.duration(props.trainTimeout),
        // The worker heartbeats while it trains; a dead worker fails the step instead of hanging it.
        heartbeatTimeout: sfn.Timeout.duration(Duration.minutes(10)),
      });
    }
    const job = new ExactBatchSubmitJob(this, STATE.train, props.train.queue, props.train.access.jobDefinitions, {
      jobName: sfn.JsonPath.stringAt('$.runId'),
      jobQueueArn: props.train.queue.jobQueueArn,
      jobDefinitionArn: sfn.JsonPath.stringAt('$.access.jobDefinitionArn'),
      containerOverrides: {
        environment: { RUN_SPEC: sfn.JsonPath.jsonToString(sfn.JsonPath.objectAt('$.runSpec')) },
      },
      // No taskTimeout: it would override the job definition's per-attempt timeout; the execution timeout bounds retries.
      resultSelector: { 'jobId.$': '$.JobId' },
      resultPath: '$.train',
    });
    // Submission throttling only; job failures (spot reclaims included) are the job definition's retry strategy.
    job.addRetry({ errors: ['Batch.AWSBatchException', 'Batch.TooManyRequestsException'], maxAttempts: 5, backoffRate: 2 });
    return job;
  }
}

/**
 * The Distributed Map reads the shard plan Validate wrote. S3JsonItemReader grants s3:GetObject on the whole bucket
 * (its key is a JSONPath); the plan's key is always core/s3-layout.ts shardPlanKey, so the grant is that pattern.
 */
class ShardPlanReader extends sfn.S3JsonItemReader {
  private readonly planBucket: s3.IBucket;

  constructor(props: sfn.S3FileItemReaderProps & { bucket: s3.IBucket }) {
    super(props);
    this.planBucket = props.bucket;
  }

  override providePolicyStatements(): iam.PolicyStatement[] {
    return [new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [this.planBucket.arnForObjects(shardPlanKey('*'))] })];
  }
}

/**
 * The Distributed Map writes its Shard items' results (manifest.json and result files) under the run's
 * shardResultsPrefix; ResultWriterV2 grants its actions on the whole bucket, this one on that prefix only.
 */
class ShardResultsWriter extends sfn.ResultWriterV2 {
  private readonly resultsBucket: s3.IBucket;

  constructor(props: sfn.ResultWriterV2Props & { bucket: s3.IBucket }) {
    super(props);
    this.resultsBucket = props.bucket;
  }

  override providePolicyStatements(): iam.PolicyStatement[] {
    return [
      new iam.PolicyStatement({
        actions: ['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'],
        resources: [this.resultsBucket.arnForObjects(`${shardResultsPrefix('*')}/*`)],
      }),
    ];
  }
}

/**
 * BatchSubmitJob with the state machine's Batch grants exact. CDK's grants batch:SubmitJob on every job definition
 * in the account (`job-definition/*`); this one names the queue and the job definitions of this deployment's runs
 * (`<namePrefix>*`, which only its grant function may register, each with a run role under the boundary; not the
 * role-less template). `.sync` also needs, as Step Functions documents: the managed EventBridge rule
 * (StepFunctionsGetEventsForBatchJobsRule, one per account and region, shared by every state machine there) to
 * learn of the job's end, batch:DescribeJobs (no resource-level permissions) to poll it, and batch:TerminateJob on
 * `job/*` to stop the job when the execution is stopped or times out (job ids exist only once submitted).
 */
class ExactBatchSubmitJob extends tasks.BatchSubmitJob {
  protected override readonly taskPolicies: iam.PolicyStatement[];

  /** `jobDefinitions`: the ARN pattern of what Train may submit (RunAccess.jobDefinitions). */
  constructor(scope: Construct, id: string, queue: batch.IJobQueue, jobDefinitions: string, props: tasks.BatchSubmitJobProps) {
    super(scope, id, props);
    const stack = Stack.of(this);
    this.taskPolicies = [
      new iam.PolicyStatement({ actions: ['batch:SubmitJob'], resources: [jobDefinitions, queue.jobQueueArn] }),
      new iam.PolicyStatement({ actions: ['batch:DescribeJobs'], resources: ['*'] }),
      new iam.PolicyStatement({ actions: ['batch:TerminateJob'], resources: [stack.formatArn({ service: 'batch', resource: 'job', resourceName: '*' })] }),
      new iam.PolicyStatement({
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [stack.formatArn({ service: 'events', resource: 'rule', resourceName: BATCH_SYNC_RULE })],
      }),
    ];
  }
}

/** The EventBridge rule Step Functions manages for every `batch:submitJob.sync` task in an account and region. */
export const BATCH_SYNC_RULE = 'StepFunctionsGetEventsForBatchJobsRule';

/** Without a payload the function receives the whole state input. */
function lambdaStep(
  scope: Construct,
  id: string,
  fn: lambda.IFunction,
  payload?: sfn.TaskInput,
  /** Unset: the result replaces the state (an explicit "$" trips aws-local-stepfunctions 3.0.0). */
  resultPath?: string,
): tasks.LambdaInvoke {
  const step = new tasks.LambdaInvoke(scope, id, {
    lambdaFunction: fn,
    payload,
    payloadResponseOnly: true,
    resultPath,
    taskTimeout: LAMBDA_TIMEOUT,
  });
  // retryOnServiceExceptions covers Lambda's own faults, not throttling: a busy account (concurrent runs' Shard maps
  // against the regional concurrency limit) would otherwise fail the run at Validate or Publish.
  step.addRetry({
    errors: ['Lambda.TooManyRequestsException'],
    interval: Duration.seconds(2),
    backoffRate: 2,
    maxAttempts: 6,
    jitterStrategy: sfn.JitterType.FULL,
  });
  return step;
}
