import { Duration } from 'aws-cdk-lib';
import type * as batch from 'aws-cdk-lib/aws-batch';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { DataBucket } from './data-bucket.ts';
import type { IngestFunctions } from './ingest-functions.ts';

/** Where Train runs: a Batch GPU job (AWS), or an Activity polled by `rsclip worker` (LocalStack). */
export type TrainTarget =
  | { kind: 'batch'; queue: batch.IJobQueue; jobDefinition: batch.IJobDefinition }
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
  train: 'Train',
  publish: 'Publish',
  notifySuccess: 'NotifySuccess',
  notifyFailure: 'NotifyFailure',
  succeeded: 'Succeeded',
  failed: 'Failed',
} as const;

const LAMBDA_TIMEOUT = sfn.Timeout.duration(Duration.minutes(15));

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
    const onFailure = notifyFailure.next(failed);
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
      itemReader: new sfn.S3JsonItemReader({ bucket, key: sfn.JsonPath.stringAt('$.planKey') }),
      maxConcurrency: props.shardConcurrency,
      toleratedFailurePercentage: props.toleratedShardFailurePercent,
      // Without a writer, Step Functions gathers every item's result into the state (256 KiB: ~1,200 shards) even
      // when ResultPath discards them; written to S3, the state gets only where they are.
      resultWriterV2: new sfn.ResultWriterV2({ bucket, prefix: sfn.JsonPath.stringAt('$.shardResultsPrefix') }),
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
      .next(train)
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
    const job = new tasks.BatchSubmitJob(this, STATE.train, {
      jobName: sfn.JsonPath.stringAt('$.runId'),
      jobQueueArn: props.train.queue.jobQueueArn,
      jobDefinitionArn: props.train.jobDefinition.jobDefinitionArn,
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
