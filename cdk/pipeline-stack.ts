import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { acknowledgeNagFindings } from './nag.ts';
import { Pipeline, type PipelineProps } from './pipeline.ts';

export interface PipelineStackProps extends StackProps {
  pipeline: PipelineProps;
}

export class PipelineStack extends Stack {
  readonly pipeline: Pipeline;

  constructor(scope: Construct, id: string, props: PipelineStackProps) {
    super(scope, id, props);
    this.pipeline = new Pipeline(this, 'Pipeline', props.pipeline);
    acknowledgeNagFindings(this, this.pipeline);
  }
}
