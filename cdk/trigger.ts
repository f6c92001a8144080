import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { CAPTIONS_FILE, DATASETS } from '../core/s3-layout.ts';
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

/** Starts the workflow when a dataset's captions.csv is written (and, optionally, on a schedule). */
export class Trigger extends Construct {
  readonly function: HandlerFunction;
  readonly uploadRule: events.Rule;

  constructor(scope: Construct, id: string, props: TriggerProps) {
    super(scope, id);
    this.function = new HandlerFunction(this, 'Function', {
      handler: 'trigger',
      architecture: props.architecture,
      logRetentionDays: props.logRetentionDays,
      memorySize: 256,
      timeout: Duration.seconds(30),
      environment: { STATE_MACHINE_ARN: props.stateMachine.stateMachineArn },
    });
    props.stateMachine.grantStartExecution(this.function);
    // Scheduled runs look up the current version of each captions.csv.
    props.data.grantPrefixes(this.function, { read: [DATASETS] });

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
    this.uploadRule.addTarget(new targets.LambdaFunction(this.function, { retryAttempts: 8, maxEventAge: Duration.hours(6) }));

    if (props.retrain) {
      new events.Rule(this, 'Retrain', { schedule: props.retrain.schedule }).addTarget(
        new targets.LambdaFunction(this.function, {
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
