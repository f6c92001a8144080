import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { CAPTIONS_FILE, captionsKey, DATASETS, trainOptionsKey } from '../core/s3-layout.ts';
import { RERUN_FILE } from '../lambdas/trigger/run-id.ts';
import { STATE_MACHINE_ARN_ENV } from '../lambdas/trigger/start-run.ts';
import type { DataBucket } from './data-bucket.ts';
import { HandlerFunction } from './node-function.ts';

export interface RetrainSchedule {
  schedule: events.Schedule;
  /** Datasets re-run on each tick, from their current captions.csv. */
  datasets: string[];
}

export interface TriggerProps {
  data: DataBucket;
  stateMachine: sfn.IStateMachine;
  architecture: lambda.Architecture;
  logRetentionDays: logs.RetentionDays;
  retrain?: RetrainSchedule;
}

/**
 * Starts the workflow when a dataset's captions.csv or its re-run marker (datasets/<name>/rerun) is written, and
 * optionally on a schedule.
 */
export class Trigger extends Construct {
  readonly function: HandlerFunction;
  readonly uploadRule: events.Rule;
  readonly rerunRule: events.Rule;
  /** Events EventBridge could not deliver to the trigger: uploads that started no run. */
  readonly failedEvents: sqs.Queue;

  constructor(scope: Construct, id: string, props: TriggerProps) {
    super(scope, id);
    this.function = new HandlerFunction(this, 'Function', {
      handler: 'trigger',
      architecture: props.architecture,
      logRetentionDays: props.logRetentionDays,
      memorySize: 256,
      timeout: Duration.seconds(30),
      environment: { [STATE_MACHINE_ARN_ENV]: props.stateMachine.stateMachineArn },
    });
    props.stateMachine.grantStartExecution(this.function);
    // Every event looks up captions.csv and train.json (their versions name the run; a dataset without train.json
    // is a 404, which needs the list grant on that key), and a multipart upload's captions.csv is read at the
    // version the event names.
    props.data.grantKeys(this.function, {
      why: "the trigger names a run by its dataset's captions.csv and train.json (HEAD, or GET of the event's version)",
      list: [captionsKey('*'), trainOptionsKey('*')],
      readVersions: [captionsKey('*')],
      read: [trainOptionsKey('*')],
    });

    this.uploadRule = new events.Rule(this, 'CaptionsUploaded', {
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created'],
        detail: {
          bucket: { name: [props.data.bucket.bucketName] },
          object: { key: events.Match.wildcard(`${DATASETS}/*/${CAPTIONS_FILE}`) },
        },
      },
    });
    // A rule of its own rather than a second key in the upload rule: EventBridge counts matches and failed
    // invocations per rule, so re-runs show apart from uploads.
    this.rerunRule = new events.Rule(this, 'RerunRequested', {
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created'],
        detail: {
          bucket: { name: [props.data.bucket.bucketName] },
          object: { key: events.Match.wildcard(`${DATASETS}/*/${RERUN_FILE}`) },
        },
      },
    });
    this.failedEvents = new sqs.Queue(this, 'FailedEvents', {
      enforceSSL: true,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      retentionPeriod: Duration.days(14),
    });
    const delivery = { retryAttempts: 8, maxEventAge: Duration.hours(6), deadLetterQueue: this.failedEvents };
    this.uploadRule.addTarget(new targets.LambdaFunction(this.function, delivery));
    this.rerunRule.addTarget(new targets.LambdaFunction(this.function, delivery));

    if (props.retrain) {
      new events.Rule(this, 'Retrain', { schedule: props.retrain.schedule }).addTarget(
        new targets.LambdaFunction(this.function, {
          ...delivery,
          event: events.RuleTargetInput.fromObject({
            source: 'rsclip.schedule',
            bucket: props.data.bucket.bucketName,
            datasets: props.retrain.datasets,
            time: events.EventField.time,
          }),
        }),
      );
    }
  }
}
