import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, STACK_NAME } from '../../cdk/app.ts';
import { DECODER_ENV } from '../../core/preprocess/decoder-env.ts';
import { ATTEMPT_DEADLINE_EXIT_CODE, ATTEMPT_TIMEOUT_ENV } from '../../core/run-spec.ts';
import { resolveDefinition } from '../../cdk/local/asl.ts';
import type { Template } from '../../cdk/local/synth.ts';
import type { StageName } from '../../cdk/pipeline.ts';

type Resource = { Type: string; Properties: Record<string, any> };
const outdirs: string[] = [];
const templates = {} as Record<StageName, Template>;

/** app.synth() with cdk-nag's AwsSolutions checks: throws on any finding left unacknowledged. */
function synth(stage: StageName, context: Record<string, unknown> = {}): Template {
  const outdir = mkdtempSync(join(tmpdir(), 'rsclip-infra-'));
  outdirs.push(outdir);
  const { app } = createApp({ context: { stage, ...context }, outdir, templateOnly: true });
  return app.synth().getStackByName(STACK_NAME).template as Template;
}

const resources = (t: Template, type: string): Resource[] =>
  Object.values(t.Resources).filter((r) => r.Type === type) as Resource[];

beforeAll(() => {
  templates.aws = synth('aws');
  templates.local = synth('local');
});
afterAll(() => outdirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('CDK app', () => {
  it('synthesizes both stages with no unacknowledged cdk-nag finding', () => {
    expect(resources(templates.aws, 'AWS::Batch::JobDefinition')).toHaveLength(1);
    expect(resources(templates.local, 'AWS::Batch::JobDefinition')).toHaveLength(0);
    expect(resources(templates.local, 'AWS::EC2::VPC')).toHaveLength(0);
    expect(resources(templates.local, 'AWS::StepFunctions::Activity')).toHaveLength(1);
    expect(Object.keys(templates.local.Outputs ?? {})).toEqual(expect.arrayContaining(['TrainActivityArn', 'BucketName']));
  });

  it('passes cdk-nag for a stack bound to an account and region too', () => {
    const saved = { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION };
    Object.assign(process.env, { CDK_DEFAULT_ACCOUNT: '123456789012', CDK_DEFAULT_REGION: 'eu-west-1' });
    try {
      expect(JSON.stringify(synth('aws'))).toContain('eu-west-1');
    } finally {
      for (const [k, v] of [['CDK_DEFAULT_ACCOUNT', saved.account], ['CDK_DEFAULT_REGION', saved.region]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('rejects a stage it does not know', () => {
    expect(() => createApp({ context: { stage: 'prod' }, templateOnly: true })).toThrow(/stage.*aws, local/);
  });

  it('keeps the data bucket encrypted, private, versioned, TLS-only, logged and emitting events', () => {
    const t = templates.aws;
    const dataId = (t.Outputs!.BucketName as { Value: { Ref: string } }).Value.Ref;
    const bucket = t.Resources[dataId] as Resource;
    const p = bucket.Properties;
    expect(p.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm).toMatch(/AES256|aws:kms/);
    expect(p.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(p.VersioningConfiguration.Status).toBe('Enabled');
    expect(p.LoggingConfiguration.DestinationBucketName).toBeDefined();
    const tmpRule = p.LifecycleConfiguration.Rules.find((r: any) => r.Prefix === '_tmp/');
    expect(tmpRule.ExpirationInDays).toBeGreaterThan(0);
    const notifications = resources(t, 'Custom::S3BucketNotifications')[0]!;
    expect(notifications.Properties.NotificationConfiguration.EventBridgeConfiguration).toEqual({});

    const policy = resources(t, 'AWS::S3::BucketPolicy').find((r) => r.Properties.Bucket.Ref === dataId)!;
    const denyInsecure = policy.Properties.PolicyDocument.Statement.find(
      (s: any) => s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false',
    );
    expect(denyInsecure.Action).toBe('s3:*');
    expect(denyInsecure.Principal).toEqual({ AWS: '*' });
    const denyOldTls = policy.Properties.PolicyDocument.Statement.find((s: any) => s.Effect === 'Deny' && s.Condition?.NumericLessThan);
    expect(denyOldTls.Condition.NumericLessThan['s3:TlsVersion']).toBe(1.2);
  });

  it('grants no wildcard actions beyond what grant* produces on the data bucket', () => {
    for (const stage of ['aws', 'local'] as const) {
      for (const policy of resources(templates[stage], 'AWS::IAM::Policy')) {
        for (const s of policy.Properties.PolicyDocument.Statement) {
          const actions: string[] = [s.Action].flat();
          expect(actions).not.toContain('*');
          expect(actions.filter((a) => a === 's3:*' || a === 's3:Put*')).toEqual([]);
          const wild = actions.filter((a) => a.startsWith('s3:') && a.includes('*'));
          expect(wild.every((a) => ['s3:GetObject*', 's3:GetBucket*', 's3:List*', 's3:DeleteObject*', 's3:Abort*'].includes(a))).toBe(true);
        }
      }
    }
  });

  it('routes captions.csv uploads to the trigger with retries and a dead-letter queue', () => {
    const rule = resources(templates.aws, 'AWS::Events::Rule').find((r) => r.Properties.EventPattern?.source?.includes('aws.s3'))!;
    expect(rule.Properties.EventPattern).toMatchObject({
      source: ['aws.s3'],
      'detail-type': ['Object Created'],
      detail: { object: { key: [{ wildcard: 'datasets/*/captions.csv' }] } },
    });
    const target = rule.Properties.Targets[0];
    expect(target.RetryPolicy.MaximumRetryAttempts).toBeGreaterThan(0);
    expect(target.DeadLetterConfig.Arn['Fn::GetAtt'][0]).toMatch(/FailedEvents/);
  });

  it('runs the Lambda steps on Node 24 with X-Ray tracing', () => {
    const fns = resources(templates.aws, 'AWS::Lambda::Function').filter((f) => f.Properties.Environment?.Variables?.POWERTOOLS_SERVICE_NAME);
    // Validate, Shard, Collect, Publish, the trigger, and the run-access grant and revoke.
    expect(fns.length).toBe(7);
    for (const f of fns) {
      expect(f.Properties.Runtime).toBe('nodejs24.x');
      expect(f.Properties.TracingConfig.Mode).toBe('Active');
    }
    // The Shard function decodes with the allocator setting bench-shard measures it with.
    const shard = fns.find((f) => f.Properties.Environment.Variables.POWERTOOLS_SERVICE_NAME === 'rsclip-shard')!;
    expect(shard.Properties.Environment.Variables).toMatchObject(DECODER_ENV);
  });

  it('defines the workflow: Distributed Map over the shard plan, Batch .sync, retries, catches into a Fail state', () => {
    const asl = resolveDefinition(templates.aws, 'data-bucket') as any;
    const s = asl.States;
    expect(asl.StartAt).toBe('Validate');
    expect(s.Shard.Type).toBe('Map');
    expect(s.Shard.ItemProcessor.ProcessorConfig.Mode).toBe('DISTRIBUTED');
    expect(s.Shard.ItemReader.Parameters).toEqual({ Bucket: 'data-bucket', 'Key.$': '$.planKey' });
    expect(s.Shard.ItemReader.ReaderConfig.InputType).toBe('JSON');
    expect(s.Shard.ItemBatcher).toBeUndefined();
    expect(s.Shard.MaxConcurrency).toBeGreaterThan(0);
    expect(s.Shard.ItemProcessor.States.ShardOne.Retry.some((r: any) => r.ErrorEquals.includes('States.TaskFailed'))).toBe(true);
    expect(s.Shard.ResultWriter).toMatchObject({ Resource: 'arn:aws:states:::s3:putObject', Parameters: { Bucket: 'data-bucket', 'Prefix.$': '$.shardResultsPrefix' } });
    // Throttling is retried on every Lambda step, with backoff.
    // Collect decides the run from the items' summaries, before anything trains.
    expect(s.Shard.Next).toBe('Collect');
    expect(s.Collect.Parameters).toEqual({ 'runId.$': '$.runId', 'bucket.$': '$.bucket', 'dataset.$': '$.dataset', 'shards.$': '$.shards' });
    expect(s.Collect.Next).toBe('BuildRunSpec');
    for (const state of [s.Validate, s.Collect, s.Publish, s.Shard.ItemProcessor.States.ShardOne]) {
      expect(state.Retry.find((r: any) => r.ErrorEquals.includes('Lambda.TooManyRequestsException'))).toMatchObject({ BackoffRate: 2, MaxAttempts: 6 });
    }

    expect(s.Train.Resource).toBe('arn:aws:states:::batch:submitJob.sync');
    expect(s.Train.Parameters.ContainerOverrides.Environment).toEqual([{ Name: 'RUN_SPEC', 'Value.$': 'States.JsonToString($.runSpec)' }]);
    expect(s.BuildRunSpec.Parameters).toMatchObject({ 'runId.$': '$.runId', 'bucket.$': '$.bucket', 'dataset.$': '$.dataset', 'options.$': '$.options' });
    // Train runs under a role of the run's own: granted before, waited on (IAM propagation), revoked after.
    expect(s.BuildRunSpec.Next).toBe('GrantRunAccess');
    expect(s.GrantRunAccess.Parameters).toEqual({ 'runSpec.$': '$.runSpec' });
    expect(s.GrantRunAccess.ResultPath).toBe('$.access');
    expect(s.GrantRunAccess.Next).toBe('AwaitRunRole');
    expect(s.AwaitRunRole).toMatchObject({ Type: 'Wait', Seconds: 10, Next: 'Train' });
    expect(s.Train.Parameters['JobDefinition.$']).toBe('$.access.jobDefinitionArn');
    expect(s.Train.Next).toBe('RevokeRunAccess');
    expect(s.RevokeRunAccess).toMatchObject({ Parameters: { 'runId.$': '$.runId' }, ResultPath: null, Next: 'Publish' });

    for (const name of ['Validate', 'Shard', 'Collect', 'GrantRunAccess', 'Train', 'RevokeRunAccess', 'Publish']) {
      expect(s[name].Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'RevokeAfterFailure' }]);
    }
    // A failure revokes first, and notifies with the run's own error even when the revoke fails too.
    expect(s.RevokeAfterFailure).toMatchObject({ Parameters: { 'runId.$': '$.runId' }, ResultPath: null, Next: 'NotifyFailure' });
    expect(s.RevokeAfterFailure.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.revokeError', Next: 'NotifyFailure' }]);
    expect(s.NotifyFailure.Resource).toBe('arn:aws:states:::sns:publish');
    expect(s.NotifyFailure.Next).toBe('Failed');
    expect(s.Failed).toEqual({ Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' });
    expect(s.Publish.Next).toBe('NotifySuccess');
    expect(JSON.stringify(asl)).not.toContain('JSONata');

    const machine = resources(templates.aws, 'AWS::StepFunctions::StateMachine')[0]!;
    expect(machine.Properties.LoggingConfiguration.Level).toBe('ALL');
    expect(machine.Properties.TracingConfiguration.Enabled).toBe(true);
  });

  it("hands Publish what orders runs for latest.json: the execution's input and start, and read access to captions.csv", () => {
    const s = (resolveDefinition(templates.aws, 'data-bucket') as any).States;
    expect(s.Publish.Parameters).toMatchObject({ 'trigger.$': '$$.Execution.Input', 'startedAt.$': '$$.Execution.StartTime' });
    const publishPolicy = resources(templates.aws, 'AWS::IAM::Policy').find((p) => JSON.stringify(p.Properties.Roles).includes('Publish'))!;
    const versions = publishPolicy.Properties.PolicyDocument.Statement.find((s: any) => [s.Action].flat().includes('s3:GetObjectVersion'));
    expect(JSON.stringify(versions.Resource)).toContain('/datasets/*/captions.csv');
  });

  it('retries a Batch job on spot reclaims and on a stop before the attempt timeout, and exits on any other failure', () => {
    const job = resources(templates.aws, 'AWS::Batch::JobDefinition')[0]!;
    expect(job.Properties.RetryStrategy.EvaluateOnExit).toEqual([
      { Action: 'RETRY', OnStatusReason: 'Host EC2*' },
      { Action: 'RETRY', OnExitCode: String(ATTEMPT_DEADLINE_EXIT_CODE) },
      { Action: 'EXIT', OnReason: '*' },
    ]);
    // The worker knows its attempt budget; the execution outlasts every attempt.
    const attempt = job.Properties.Timeout.AttemptDurationSeconds;
    expect(job.Properties.ContainerProperties.Environment).toContainEqual({ Name: ATTEMPT_TIMEOUT_ENV, Value: String(attempt) });
    expect(job.Properties.RetryStrategy.Attempts).toBe(5);
    expect((resolveDefinition(templates.aws, 'data-bucket') as any).TimeoutSeconds).toBe(5 * attempt + 7200);
    const gpu = job.Properties.ContainerProperties.ResourceRequirements.find((r: any) => r.Type === 'GPU');
    expect(gpu.Value).toBe('1');
    const env = resources(templates.aws, 'AWS::Batch::ComputeEnvironment')[0]!.Properties.ComputeResources;
    expect(env.MinvCpus).toBe(0);
    expect(env.Type).toBe('SPOT');
    expect(env.AllocationStrategy).toBe('SPOT_PRICE_CAPACITY_OPTIMIZED');
    expect(resources(templates.aws, 'AWS::EC2::FlowLog')).toHaveLength(1);
  });

  it('queues an on-demand GPU compute environment behind the spot one', () => {
    const envs = Object.entries(templates.aws.Resources).filter(([, r]) => r.Type === 'AWS::Batch::ComputeEnvironment') as [string, Resource][];
    const [spot, onDemand] = ['SPOT', 'EC2'].map((type) => envs.find(([, r]) => r.Properties.ComputeResources.Type === type)!);
    expect(envs).toHaveLength(2);
    expect(onDemand![1].Properties.ComputeResources).toMatchObject({
      MinvCpus: 0,
      MaxvCpus: 16,
      AllocationStrategy: 'BEST_FIT_PROGRESSIVE',
      InstanceTypes: spot![1].Properties.ComputeResources.InstanceTypes,
      Ec2Configuration: [{ ImageType: 'ECS_AL2023_NVIDIA' }],
    });
    const [queue] = resources(templates.aws, 'AWS::Batch::JobQueue');
    expect(queue!.Properties.ComputeEnvironmentOrder).toEqual([
      { ComputeEnvironment: { 'Fn::GetAtt': [spot![0], 'ComputeEnvironmentArn'] }, Order: 1 },
      { ComputeEnvironment: { 'Fn::GetAtt': [onDemand![0], 'ComputeEnvironmentArn'] }, Order: 2 },
    ]);
  });

  it('serves Train from an Activity with heartbeat and timeout in the local stage', () => {
    const s = resolveDefinition(templates.local, 'data-bucket').States as any;
    expect(s.Train.Resource).toMatch(/^arn:aws:states:us-east-1:\d+:activity:/);
    expect(s.Train.HeartbeatSeconds).toBeGreaterThan(0);
    expect(s.Train.TimeoutSeconds).toBeGreaterThan(s.Train.HeartbeatSeconds);
    expect(s.Train.InputPath).toBe('$.runSpec');
  });

  it('takes GPU, spot and schedule settings from context', () => {
    const t = synth('aws', { spot: 'false', gpuInstanceTypes: 'g6.2xlarge', maxVcpus: '8', retrainSchedule: 'rate(7 days)', retrainDatasets: 'a,b' });
    // On-demand already: no second environment behind it.
    expect(resources(t, 'AWS::Batch::ComputeEnvironment')).toHaveLength(1);
    const env = resources(t, 'AWS::Batch::ComputeEnvironment')[0]!.Properties.ComputeResources;
    expect(env.Type).toBe('EC2');
    expect(env.InstanceTypes).toEqual(['g6.2xlarge']);
    expect(env.MaxvCpus).toBe(8);
    const schedule = resources(t, 'AWS::Events::Rule').find((r) => r.Properties.ScheduleExpression)!;
    expect(schedule.Properties.ScheduleExpression).toBe('rate(7 days)');
    const input = JSON.stringify(schedule.Properties.Targets[0].InputTransformer.InputTemplate).replace(/\\"/g, '"');
    expect(input).toContain('"source":"rsclip.schedule"');
    expect(input).toContain('"datasets":["a","b"]');
    expect(input).toMatch(/"time":<[^>]+>/);
  });

  it('takes the on-demand ceiling and the Shard concurrency from context', () => {
    const t = synth('aws', { onDemandMaxVcpus: '0', shardConcurrency: '48' });
    expect(resources(t, 'AWS::Batch::ComputeEnvironment').map((r) => r.Properties.ComputeResources.Type)).toEqual(['SPOT']);
    expect(resources(t, 'AWS::Batch::JobQueue')[0]!.Properties.ComputeEnvironmentOrder).toHaveLength(1);
    expect((resolveDefinition(t, 'data-bucket') as any).States.Shard.MaxConcurrency).toBe(48);
    expect((resolveDefinition(templates.aws, 'data-bucket') as any).States.Shard.MaxConcurrency).toBe(16);
  });

  it.each([
    [{ shardConcurrency: '0' }, /shardConcurrency.*at least 1/],
    [{ shardConcurrency: '10001' }, /shardConcurrency must be an integer from 1 to 10000/],
    [{ shardConcurrency: '1.5' }, /shardConcurrency/],
    [{ onDemandMaxVcpus: '-4' }, /onDemandMaxVcpus.*at least 0/],
  ])('rejects context %j', (context, message) => {
    expect(() => createApp({ context: { stage: 'aws', ...context }, templateOnly: true, nag: false })).toThrow(message);
  });
});
