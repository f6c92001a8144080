import { App, Duration, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import { AwsSolutionsChecks } from 'cdk-nag';
import { PipelineStack } from './pipeline-stack.ts';
import type { PipelineProps } from './pipeline.ts';
import { parseStage, stageProps } from './stage.ts';

export const STACK_NAME = 'Rsclip';

export interface CreateAppOptions {
  /** Context as `-c key=value` would give it (strings), plus anything App accepts. */
  context?: Record<string, unknown>;
  outdir?: string;
  /**
   * Template only: no esbuild bundling, no asset copies and no built-in CloudFormation validation (its ~13 s of
   * CPU). For tests and the local runner; `cdk synth` does all of it.
   */
  templateOnly?: boolean;
  /** Run cdk-nag (default true; the local runner, which only reads the template, turns it off). */
  nag?: boolean;
}

/**
 * The app of `cdk synth`/`cdk deploy`, the tests and the local runner: one stack, cdk-nag at every synth.
 * Context keys (all optional): stage (aws|local), baseModelUri, notificationEmail, gpuInstanceTypes
 * (comma-separated), spot (true|false), maxVcpus, onDemandMaxVcpus (0: no on-demand environment behind spot),
 * shardConcurrency, trainTimeoutHours, initSources (comma-separated s3:// URIs), retrainSchedule (an EventBridge rate/cron expression) with retrainDatasets
 * (comma-separated).
 */
export function createApp(options: CreateAppOptions = {}): { app: App; stack: PipelineStack } {
  const app = new App({
    outdir: options.outdir,
    ...(options.templateOnly ? { builtinCloudFormationValidation: false } : {}),
    context: {
      ...options.context,
      ...(options.templateOnly ? { 'aws:cdk:bundling-stacks': [], 'aws:cdk:disable-asset-staging': true } : {}),
    },
  });
  if (options.nag ?? true) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  const stack = new PipelineStack(app, STACK_NAME, {
    pipeline: pipelineProps((key) => app.node.tryGetContext(key)),
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
    description: 'rsclip: S3 datasets -> validate -> shard -> GPU fine-tuning -> published CLIP model',
  });
  return { app, stack };
}

function pipelineProps(context: (key: string) => unknown): PipelineProps {
  const props = stageProps(parseStage(context('stage')));
  const text = (key: string): string | undefined => {
    const v = context(key);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new Error(`context "${key}" must be a string`);
    }
    return String(v);
  };
  const list = (key: string): string[] | undefined => text(key)?.split(',').map((s) => s.trim()).filter(Boolean);
  const integer = (key: string, min: number): number | undefined => {
    const v = text(key);
    if (v !== undefined && !(/^\d+$/.test(v) && Number(v) >= min)) throw new Error(`context "${key}" must be an integer of at least ${min} (got ${v})`);
    return v === undefined ? undefined : Number(v);
  };
  const positive = (key: string) => integer(key, 1);

  const instanceTypes = list('gpuInstanceTypes');
  const spot = text('spot');
  const maxVcpus = positive('maxVcpus');
  const onDemandMaxVcpus = integer('onDemandMaxVcpus', 0);
  const trainHours = positive('trainTimeoutHours');
  if (spot !== undefined && spot !== 'true' && spot !== 'false') throw new Error('context "spot" must be true or false');
  const gpu = props.gpu && {
    ...props.gpu,
    ...(instanceTypes ? { instanceTypes: instanceTypes.map((t) => new ec2.InstanceType(t)) } : {}),
    ...(spot ? { spot: spot === 'true' } : {}),
    ...(maxVcpus ? { maxvCpus: maxVcpus } : {}),
    ...(onDemandMaxVcpus !== undefined ? { onDemandMaxvCpus: onDemandMaxVcpus } : {}),
  };
  const schedule = text('retrainSchedule');
  const datasets = list('retrainDatasets');
  if (schedule && !datasets?.length) throw new Error('context "retrainSchedule" needs "retrainDatasets"');
  return {
    ...props,
    gpu,
    baseModelUri: text('baseModelUri') ?? props.baseModelUri,
    initSources: list('initSources') ?? props.initSources,
    notificationEmail: text('notificationEmail'),
    shardConcurrency: positive('shardConcurrency') ?? props.shardConcurrency,
    ...(schedule && datasets ? { retrain: { schedule: events.Schedule.expression(schedule), datasets } } : {}),
    trainTimeout: trainHours ? Duration.hours(trainHours) : props.trainTimeout,
  };
}
