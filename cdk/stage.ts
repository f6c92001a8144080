import { RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { PipelineProps, StageName } from './pipeline.ts';

export const STAGES: readonly StageName[] = ['aws', 'local'];

export function parseStage(value: unknown): StageName {
  const stage = value ?? 'aws';
  if (typeof stage !== 'string' || !STAGES.includes(stage as StageName)) {
    throw new Error(`context "stage" must be one of ${STAGES.join(', ')} (got ${JSON.stringify(value)})`);
  }
  return stage as StageName;
}

/** The deployment defaults of each stage; the app passes them to the Pipeline construct. */
export function stageProps(stage: StageName): PipelineProps {
  if (stage === 'local') {
    return {
      stage,
      // LocalStack runs Lambda containers natively: build sharp for the host's architecture.
      lambdaArchitecture: process.arch === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
      removalPolicy: RemovalPolicy.DESTROY,
      logRetentionDays: logs.RetentionDays.ONE_WEEK,
    };
  }
  return {
    stage,
    gpu: {
      instanceTypes: [new ec2.InstanceType('g5.xlarge'), new ec2.InstanceType('g6.xlarge'), new ec2.InstanceType('g5.2xlarge')],
      spot: true,
      maxvCpus: 32,
      // Four single-GPU jobs at on-demand prices at most, when spot has no GPUs to give.
      onDemandMaxvCpus: 16,
    },
    lambdaArchitecture: lambda.Architecture.ARM_64,
    removalPolicy: RemovalPolicy.RETAIN,
    logRetentionDays: logs.RetentionDays.THREE_MONTHS,
  };
}
