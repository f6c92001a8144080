import { Duration } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { DataBucket } from './data-bucket.ts';
import { HandlerFunction } from './node-function.ts';

export interface IngestFunctionsProps {
  data: DataBucket;
  architecture: lambda.Architecture;
  logRetentionDays: logs.RetentionDays;
}

/** The Lambda steps of the workflow: Validate and Shard (ingest team's handlers) and Publish. */
export class IngestFunctions extends Construct {
  readonly validate: HandlerFunction;
  readonly shard: HandlerFunction;
  readonly publish: HandlerFunction;

  constructor(scope: Construct, id: string, props: IngestFunctionsProps) {
    super(scope, id);
    const common = { architecture: props.architecture, logRetentionDays: props.logRetentionDays };
    this.validate = new HandlerFunction(this, 'Validate', {
      ...common,
      handler: 'validate',
      memorySize: 1024,
      timeout: Duration.minutes(5),
      nativeModules: ['sharp'],
    });
    this.shard = new HandlerFunction(this, 'Shard', {
      ...common,
      handler: 'shard',
      memorySize: 2048,
      timeout: Duration.minutes(10),
      nativeModules: ['sharp'],
    });
    this.publish = new HandlerFunction(this, 'Publish', {
      ...common,
      handler: 'publish',
      memorySize: 512,
      timeout: Duration.minutes(5),
    });
    props.data.grantPrefixes(this.validate, { read: ['datasets'], write: ['runs'] });
    props.data.grantPrefixes(this.shard, { read: ['datasets'], write: ['runs'] });
    props.data.grantPrefixes(this.publish, { read: ['runs', 'models'], write: ['models'] });
  }
}
