import { CfnOutput, Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { DataBucket } from './data-bucket.ts';
import { GpuWorker, type GpuComputeProps } from './gpu-compute.ts';
import { IngestFunctions } from './ingest-functions.ts';
import { parseInitSource } from './init-sources.ts';
import { RunAccess } from './run-access.ts';
import { Trigger, type RetrainSchedule } from './trigger.ts';
import { Workflow, type TrainTarget } from './workflow.ts';

/**
 * `aws`: the deployable pipeline (VPC, Batch GPU worker). `local`: the same pipeline for LocalStack's free tier,
 * where Batch and ECR are unavailable, so Train is an Activity served by `rsclip worker --activity-arn`.
 */
export type StageName = 'aws' | 'local';

export interface PipelineProps {
  stage: StageName;
  /** Required for stage `aws`; ignored for `local` (Train is an Activity there). */
  gpu?: GpuComputeProps;
  /** Checkpoint URI a run starts from when its train.json sets no `init`. */
  baseModelUri?: string;
  /**
   * s3:// URIs (objects, or prefixes ending in `/`) a dataset's train.json `init` may name besides the built-in
   * sources (random:, latest, models/, a checkpoint file in the dataset's own folder): Validate refuses any other,
   * and a run's role may read the one its init names (the run roles' boundary: these).
   */
  initSources?: string[];
  notificationEmail?: string;
  lambdaArchitecture: lambda.Architecture;
  logRetentionDays: logs.RetentionDays;
  removalPolicy: RemovalPolicy;
  /** Days an overwritten or deleted object version is kept (default 30). */
  noncurrentVersionDays?: number;
  retrain?: RetrainSchedule;
  /**
   * Shard Lambdas at once per run (default 16; 1-10,000, the Distributed Map's range). Runs at once times this is
   * what the account's Lambda concurrency must hold (docs/DEPLOY.md).
   */
  shardConcurrency?: number;
  /** Percentage of shards that may fail without failing the run (default 0). */
  toleratedShardFailurePercent?: number;
  /** Longest a training job may run (default 12 h). */
  trainTimeout?: Duration;
}

/** A Distributed Map runs at most this many child executions at once. */
const MAX_MAP_CONCURRENCY = 10_000;

/** The whole pipeline: bucket, trigger, Lambda steps, GPU worker (or Activity) and the state machine. */
export class Pipeline extends Construct {
  readonly data: DataBucket;
  readonly functions: IngestFunctions;
  readonly workflow: Workflow;
  readonly trigger: Trigger;
  readonly gpu?: GpuWorker;
  readonly runAccess?: RunAccess;
  readonly trainActivity?: sfn.Activity;

  constructor(scope: Construct, id: string, props: PipelineProps) {
    super(scope, id);
    const trainTimeout = props.trainTimeout ?? Duration.hours(12);
    const shardConcurrency = props.shardConcurrency ?? 16;
    // MaxConcurrency 0 would be unlimited, not none.
    if (!Number.isInteger(shardConcurrency) || shardConcurrency < 1 || shardConcurrency > MAX_MAP_CONCURRENCY) {
      throw new Error(`Pipeline: shardConcurrency must be an integer from 1 to ${MAX_MAP_CONCURRENCY} (got ${shardConcurrency})`);
    }
    const common = { architecture: props.lambdaArchitecture, logRetentionDays: props.logRetentionDays };
    this.data = new DataBucket(this, 'Data', {
      removalPolicy: props.removalPolicy,
      noncurrentVersionDays: props.noncurrentVersionDays ?? 30,
    });
    const initSources = (props.initSources ?? []).map(parseInitSource);
    this.functions = new IngestFunctions(this, 'Steps', { data: this.data, initSources: initSources.map((s) => s.uri), ...common });

    let train: TrainTarget;
    if (props.stage === 'local') {
      this.trainActivity = new sfn.Activity(this, 'TrainActivity');
      train = { kind: 'activity', activity: this.trainActivity };
    } else {
      if (!props.gpu) throw new Error('Pipeline: stage "aws" needs gpu props (instance types, spot, max vCPUs)');
      this.gpu = new GpuWorker(this, 'Gpu', { ...props.gpu, logRetentionDays: props.logRetentionDays, jobTimeout: trainTimeout });
      this.runAccess = new RunAccess(this, 'RunAccess', {
        data: this.data,
        // The deployment's base model is the operator's choice, not a dataset's: readable, not an init source.
        extraSources: [...initSources, ...(props.baseModelUri?.startsWith('s3://') ? [parseInitSource(props.baseModelUri)] : [])],
        jobTemplate: this.gpu.jobDefinition,
        ...common,
      });
      train = { kind: 'batch', queue: this.gpu.queue, access: this.runAccess };
    }

    this.workflow = new Workflow(this, 'Workflow', {
      data: this.data,
      functions: this.functions,
      train,
      baseModelUri: props.baseModelUri,
      notificationEmail: props.notificationEmail,
      shardConcurrency,
      toleratedShardFailurePercent: props.toleratedShardFailurePercent ?? 0,
      trainTimeout,
      trainAttempts: this.gpu?.attempts,
      logRetentionDays: props.logRetentionDays,
    });
    this.runAccess?.revokeWhenEnded(this.workflow.stateMachine);
    this.trigger = new Trigger(this, 'Trigger', {
      data: this.data,
      stateMachine: this.workflow.stateMachine,
      retrain: props.retrain,
      ...common,
    });

    new CfnOutput(this, 'BucketName', { key: 'BucketName', value: this.data.bucket.bucketName });
    new CfnOutput(this, 'StateMachineArn', { key: 'StateMachineArn', value: this.workflow.stateMachine.stateMachineArn });
    if (this.trainActivity) {
      new CfnOutput(this, 'TrainActivityArn', { key: 'TrainActivityArn', value: this.trainActivity.activityArn });
    }
  }
}
