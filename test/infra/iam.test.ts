import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, STACK_NAME } from '../../cdk/app.ts';
import { dataBucketLogicalId, type Template } from '../../cdk/local/synth.ts';
import { INIT_CHECKPOINT_SUFFIXES, INIT_LATEST, INIT_RANDOM_PREFIX } from '../../core/train-options.ts';
import { INIT_SOURCES_ENV } from '../../lambdas/validate/init-sources.ts';
import { LATEST, RANDOM_PREFIX } from '../../worker/train/base-model.ts';

/**
 * The synthesized IAM policies, statement by statement, with every resource rendered as a string (`<Bucket>` for
 * the data bucket's ARN, `<Id.Attr>` / `<Id>` for other references), so the assertions read like the policies.
 */
type Statement = { role: string; actions: string[]; resources: string[]; condition?: Record<string, Record<string, string[]>> };

const outdirs: string[] = [];
function synth(context: Record<string, unknown> = {}, nag = false): Template {
  const outdir = mkdtempSync(join(tmpdir(), 'rsclip-iam-'));
  outdirs.push(outdir);
  const { app } = createApp({ context: { stage: 'aws', ...context }, outdir, templateOnly: true, nag });
  return app.synth().getStackByName(STACK_NAME).template as Template;
}
afterAll(() => outdirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function render(value: unknown, bucket: string): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if ('Fn::Join' in v) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => render(p, bucket)).join(sep);
  }
  if ('Fn::GetAtt' in v) {
    const [id, attr] = v['Fn::GetAtt'] as [string, string];
    return id === bucket && attr === 'Arn' ? '<Bucket>' : `<${id}.${attr}>`;
  }
  if ('Ref' in v) return v.Ref === bucket ? '<BucketName>' : `<${String(v.Ref)}>`;
  if ('Fn::Sub' in v) return `<Sub:${String(v['Fn::Sub'])}>`;
  if ('Fn::Select' in v) return '<Select>';
  throw new Error(`cannot render ${JSON.stringify(value)}`);
}

function statements(t: Template): Statement[] {
  const bucket = dataBucketLogicalId(t);
  const out: Statement[] = [];
  for (const [id, r] of Object.entries(t.Resources)) {
    if (r.Type !== 'AWS::IAM::Policy' && r.Type !== 'AWS::IAM::ManagedPolicy') continue;
    const p = r.Properties as { Roles?: { Ref: string }[]; PolicyDocument: { Statement: Record<string, unknown>[] } };
    for (const s of p.PolicyDocument.Statement) {
      expect(s.Effect).toBe('Allow');
      out.push({
        // A managed policy attached to no role (the run boundary) stands for itself.
        role: p.Roles?.map((x) => x.Ref).join(',') ?? id,
        actions: [s.Action as string | string[]].flat(),
        resources: [s.Resource].flat().map((x) => render(x, bucket)),
        condition: s.Condition as Statement['condition'],
      });
    }
  }
  return out;
}

const roleOf = (all: Statement[], name: RegExp): Statement[] => {
  const roles = [...new Set(all.map((s) => s.role))].filter((r) => name.test(r));
  expect(roles).toHaveLength(1);
  return all.filter((s) => s.role === roles[0]);
};
/** The bucket object patterns a role may use with `action`. */
const objectsFor = (ss: Statement[], action: string): string[] =>
  [...new Set(ss.filter((s) => s.actions.includes(action)).flatMap((s) => s.resources))].filter((r) => r.startsWith('<Bucket>/')).map((r) => r.slice('<Bucket>/'.length)).sort();

let all: Statement[];
let template: Template;
beforeAll(() => {
  template = synth();
  all = statements(template);
});

describe('IAM: least privilege', () => {
  it("lets the state machine submit only its runs' job definitions to its own queue, with exact .sync grants", () => {
    expect(JSON.stringify(template)).not.toContain('job-definition/*');
    const sfn = roleOf(all, /StateMachineRole/);
    const submit = sfn.filter((s) => s.actions.includes('batch:SubmitJob'));
    expect(submit).toHaveLength(1);
    const queue = Object.entries(template.Resources).find(([, r]) => r.Type === 'AWS::Batch::JobQueue')![0];
    const runDefinitions = /^arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job-definition\/(rsclip-[0-9a-f]{8}-)\*$/;
    expect(submit[0]!.resources.sort()).toEqual([expect.stringMatching(runDefinitions), `<${queue}.JobQueueArn>`].sort());
    // Not the role-less template: only what the grant function registers under the prefix, which it alone may.
    const prefix = runDefinitions.exec(submit[0]!.resources.find((r) => r.includes('job-definition'))!)![1]!;
    const registers = all.filter((s) => s.actions.includes('batch:RegisterJobDefinition'));
    expect(registers.map((s) => s.role)).toEqual([expect.stringMatching(/RunAccessGrant/)]);
    expect(registers[0]!.resources).toEqual([`arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job-definition/${prefix}*`]);
    expect(sfn.find((s) => s.actions.includes('batch:TerminateJob'))!.resources).toEqual([
      'arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/*',
    ]);
    expect(sfn.find((s) => s.actions.includes('events:PutRule'))!.resources).toEqual([
      'arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/StepFunctionsGetEventsForBatchJobsRule',
    ]);
    // Nothing else of Batch, and nowhere else.
    const batchOf = (role: RegExp) => [...new Set(roleOf(all, role).flatMap((s) => s.actions).filter((a) => a.startsWith('batch:')))].sort();
    expect(batchOf(/StateMachineRole/)).toEqual(['batch:DescribeJobs', 'batch:SubmitJob', 'batch:TerminateJob']);
    expect(batchOf(/RunAccessGrant/)).toEqual(['batch:DescribeJobDefinitions', 'batch:RegisterJobDefinition', 'batch:TagResource']);
    expect(batchOf(/RunAccessRevoke/)).toEqual(['batch:DeregisterJobDefinition', 'batch:DescribeJobDefinitions']);
    const batchRoles = all.filter((s) => s.actions.some((a) => a.startsWith('batch:'))).map((s) => s.role);
    expect(batchRoles.every((r) => /StateMachineRole|RunAccessGrant|RunAccessRevoke/.test(r))).toBe(true);
  });

  it('lets only the grant function create roles: under the run path and prefix, with the run boundary, tagged with the run id', () => {
    const boundary = Object.entries(template.Resources).find(([, r]) => r.Type === 'AWS::IAM::ManagedPolicy')![0];
    const iamStatements = all.filter((s) => s.actions.some((a) => a.startsWith('iam:')));
    const roles = /^arn:<AWS::Partition>:iam::<AWS::AccountId>:role\/rsclip\/runs\/rsclip-[0-9a-f]{8}-\*$/;
    const grant = roleOf(all, /RunAccessGrant/);
    const create = grant.find((s) => s.actions.includes('iam:CreateRole'))!;
    expect(create.actions.sort()).toEqual(['iam:CreateRole', 'iam:PutRolePolicy']);
    expect(create.resources).toEqual([expect.stringMatching(roles)]);
    expect(create.condition).toEqual({ StringEquals: { 'iam:PermissionsBoundary': { Ref: boundary } } });
    expect(grant.find((s) => s.actions.includes('iam:TagRole'))!.condition).toEqual({ 'ForAllValues:StringEquals': { 'aws:TagKeys': ['rsclip:runId'] } });
    const pass = grant.find((s) => s.actions.includes('iam:PassRole'))!;
    expect(pass.resources[0]).toMatch(roles);
    expect(pass.resources[1]).toMatch(/^<PipelineGpuWorkerExecutionRole[0-9A-F]+\.Arn>$/);
    const revoke = roleOf(all, /RunAccessRevoke/);
    expect(revoke.find((s) => s.actions.includes('iam:DeleteRolePolicy'))!.condition).toEqual({ StringEquals: { 'iam:PermissionsBoundary': { Ref: boundary } } });
    expect(revoke.find((s) => s.actions.includes('iam:DeleteRole'))!.resources).toEqual([expect.stringMatching(roles)]);
    // No other role touches IAM, and nothing attaches managed policies or changes a boundary.
    expect([...new Set(iamStatements.map((s) => s.role))].every((r) => /RunAccessGrant|RunAccessRevoke/.test(r))).toBe(true);
    const actions = iamStatements.flatMap((s) => s.actions);
    for (const a of ['iam:AttachRolePolicy', 'iam:PutRolePermissionsBoundary', 'iam:DeleteRolePermissionsBoundary', 'iam:UpdateAssumeRolePolicy']) expect(actions).not.toContain(a);
    // The template job definition has no job role: what a job may do comes only from its run's role.
    const job = Object.values(template.Resources).find((r) => r.Type === 'AWS::Batch::JobDefinition')!;
    expect((job.Properties as any).ContainerProperties.JobRoleArn).toBeUndefined();
  });

  it('revokes the runs of executions that end without their revoke step (aborted, timed out, failed)', () => {
    const rule = Object.values(template.Resources).find((r) => r.Type === 'AWS::Events::Rule' && (r.Properties as any).EventPattern?.source?.[0] === 'aws.states')!;
    const p = rule.Properties as any;
    expect(p.EventPattern['detail-type']).toEqual(['Step Functions Execution Status Change']);
    expect(p.EventPattern.detail.status.sort()).toEqual(['ABORTED', 'FAILED', 'TIMED_OUT']);
    expect(p.EventPattern.detail.stateMachineArn).toEqual([{ Ref: expect.stringMatching(/StateMachine/) }]);
    expect(p.Targets[0].Arn['Fn::GetAtt'][0]).toMatch(/RunAccessRevoke/);
    expect(JSON.parse(p.Targets[0].InputTransformer.InputTemplate.replace('<detail-name>', '"x"'))).toEqual({ runId: 'x' });
    expect(p.Targets[0].InputTransformer.InputPathsMap).toEqual({ 'detail-name': '$.detail.name' });
    expect(p.Targets[0].DeadLetterConfig.Arn['Fn::GetAtt'][0]).toMatch(/FailedRevokes/);
  });

  it("scopes the state machine's own S3 access to the shard plan and the Map's results", () => {
    const sfn = roleOf(all, /StateMachineRole/).filter((s) => s.actions.some((a) => a.startsWith('s3:')));
    expect([...new Set(sfn.flatMap((s) => s.resources))].sort()).toEqual(['<Bucket>/runs/*/shard-plan.json', '<Bucket>/runs/*/shard-results/*']);
    expect(objectsFor(sfn, 's3:GetObject')).toEqual(['runs/*/shard-plan.json', 'runs/*/shard-results/*']);
  });

  it('grants no S3 wildcard action, no whole-bucket object access, and ListBucket only under s3:prefix conditions', () => {
    const s3 = all.filter((s) => s.actions.some((a) => a.startsWith('s3:')));
    for (const s of s3) {
      expect(s.actions.filter((a) => a.includes('*'))).toEqual([]);
      // Object grants name a key pattern below the bucket, never all of it.
      for (const r of s.resources) expect(r).not.toMatch(/^(<Bucket>|arn:<AWS::Partition>:s3:::<BucketName>)\/\*$/);
    }
    const lists = s3.filter((s) => s.actions.includes('s3:ListBucket'));
    expect(lists.length).toBeGreaterThanOrEqual(6);
    for (const s of lists) {
      expect(s.actions).toEqual(['s3:ListBucket']);
      const prefixes = s.condition?.StringLike?.['s3:prefix'];
      expect(prefixes, `ListBucket of ${s.role}`).toBeDefined();
      expect(Object.keys(s.condition!)).toEqual(['StringLike']);
      // Every prefix pattern starts with a literal top-level folder: none lets a role list the bucket's root.
      for (const p of [prefixes!].flat()) expect(p).toMatch(/^(datasets|runs|models)\/[^*]*\*?/);
    }
  });

  it('lets no role delete under models/ or final/, and only Publish write models/<dataset>/latest.json', () => {
    for (const s of all.filter((x) => x.actions.includes('s3:DeleteObject'))) {
      for (const r of s.resources) expect(r).toMatch(/^<Bucket>\/(runs\/\*\/(plan|checkpoints)\/\*|_tmp\/\*)$/);
    }
    const modelWriters = all.filter((s) => s.actions.includes('s3:PutObject') && s.resources.some((r) => r.startsWith('<Bucket>/models/')));
    expect(modelWriters.map((s) => s.role)).toEqual([expect.stringMatching(/Publish/)]);
    expect(modelWriters[0]!.resources).toEqual(['<Bucket>/models/*/latest.json']);
  });

  it('caps every run role with a boundary of the keys a run uses: shards, checkpoints, final/, and the init sources', () => {
    const job = roleOf(all, /RunBoundary/);
    const checkpointFiles = INIT_CHECKPOINT_SUFFIXES.map((s) => `datasets/*/*${s}`);
    expect(objectsFor(job, 's3:GetObject')).toEqual(
      ['_tmp/*', 'models/*', 'runs/*/checkpoints/*', 'runs/*/final/model.safetensors', 'runs/*/shards/*', ...checkpointFiles].sort(),
    );
    expect(objectsFor(job, 's3:PutObject')).toEqual(['_tmp/*', 'runs/*/checkpoints/*', 'runs/*/final/*']);
    expect(objectsFor(job, 's3:DeleteObject')).toEqual(['_tmp/*', 'runs/*/checkpoints/*']);
    expect(job.find((s) => s.actions.includes('s3:ListBucket'))!.condition!.StringLike!['s3:prefix']).toEqual([
      'runs/*/shards/*',
      'runs/*/checkpoints/*',
      'models/*',
      ...checkpointFiles,
      'runs/*/final/model.safetensors',
    ]);
    // Not a dataset's images or captions, not a run's report, plan or the Map's results, and no version reads.
    expect(job.flatMap((s) => s.actions)).not.toContain('s3:GetObjectVersion');
    const reachable = job.flatMap((s) => s.resources).join(' ');
    for (const key of ['datasets/*/*', 'captions.csv', 'validation.json', 'shard-plan.json', 'plan/', 'shard-results']) {
      expect(reachable.split(' ')).not.toContain(`<Bucket>/${key}`);
      if (key !== 'datasets/*/*') expect(reachable).not.toContain(key);
    }
  });

  it('gives every Lambda only its own key patterns', () => {
    const expected: Record<string, Record<string, string[]>> = {
      Validate: {
        's3:GetObject': ['_tmp/*', 'datasets/*/captions.csv', 'datasets/*/train.json', 'models/*/latest.json', 'runs/*/plan/*'],
        's3:GetObjectVersion': ['datasets/*/captions.csv'],
        's3:PutObject': ['_tmp/*', 'runs/*/plan/*', 'runs/*/shard-plan.json', 'runs/*/validation.json'],
        's3:DeleteObject': ['_tmp/*', 'runs/*/plan/*'],
      },
      Shard: {
        's3:GetObject': ['_tmp/*', 'datasets/*/*', 'runs/*/plan/*'],
        's3:PutObject': ['_tmp/*', 'runs/*/shards/*'],
        's3:DeleteObject': ['_tmp/*'],
      },
      Collect: {
        's3:GetObject': ['_tmp/*', 'runs/*/shards/*', 'runs/*/validation.json'],
        's3:PutObject': ['_tmp/*', 'runs/*/shards/index.json', 'runs/*/validation.json'],
        's3:DeleteObject': ['_tmp/*'],
      },
      Publish: {
        's3:GetObject': ['datasets/*/captions.csv', 'models/*/latest.json', 'runs/*/final/*'],
        's3:GetObjectVersion': ['datasets/*/captions.csv'],
        's3:PutObject': ['models/*/latest.json'],
        's3:DeleteObject': [],
      },
      TriggerFunction: {
        's3:GetObject': ['datasets/*/captions.csv', 'datasets/*/train.json'],
        's3:GetObjectVersion': ['datasets/*/captions.csv'],
        's3:PutObject': [],
        's3:DeleteObject': [],
      },
    };
    for (const [name, byAction] of Object.entries(expected)) {
      const role = roleOf(all, new RegExp(`${name}ServiceRole`));
      for (const [action, patterns] of Object.entries(byAction)) expect(objectsFor(role, action), `${name} ${action}`).toEqual(patterns.sort());
    }
  });

  it('reads the deployment init sources and base model in the run boundary, and hands the same list to Validate', () => {
    const sources = ['s3://shared-models/base/', 's3://other-bucket/ckpt/RemoteCLIP-ViT-B-32.pt'];
    const t = synth({ initSources: sources.join(','), baseModelUri: 's3://base-bucket/models/base/RemoteCLIP-ViT-B-32.pt' }, true);
    const job = roleOf(statements(t), /RunBoundary/);
    const reads = job.filter((s) => s.actions.includes('s3:GetObject')).flatMap((s) => s.resources);
    expect(reads).toEqual(
      expect.arrayContaining([
        'arn:<AWS::Partition>:s3:::shared-models/base/*',
        'arn:<AWS::Partition>:s3:::other-bucket/ckpt/RemoteCLIP-ViT-B-32.pt',
        'arn:<AWS::Partition>:s3:::base-bucket/models/base/RemoteCLIP-ViT-B-32.pt',
      ]),
    );
    const validate = Object.values(t.Resources).find(
      (r) => r.Type === 'AWS::Lambda::Function' && (r.Properties as any).Environment?.Variables?.POWERTOOLS_SERVICE_NAME === 'rsclip-validate',
    )!;
    expect(JSON.parse((validate.Properties as any).Environment.Variables[INIT_SOURCES_ENV])).toEqual(sources);
    // The default deployment adds none.
    const fallback = Object.values(template.Resources).find(
      (r) => r.Type === 'AWS::Lambda::Function' && (r.Properties as any).Environment?.Variables?.POWERTOOLS_SERVICE_NAME === 'rsclip-validate',
    )!;
    expect((fallback.Properties as any).Environment.Variables[INIT_SOURCES_ENV]).toBe('[]');
  });

  it.each(['s3://b/models/*', 'https://example.com/x.pt', 's3://b/a/../x.pt'])('refuses the init source %s at synth', (source) => {
    expect(() => createApp({ context: { stage: 'aws', initSources: source }, templateOnly: true, nag: false })).toThrow(/initSources/);
  });

  it("keeps Validate's init keywords equal to the worker's", () => {
    expect(INIT_RANDOM_PREFIX).toBe(RANDOM_PREFIX);
    expect(INIT_LATEST).toBe(LATEST);
  });
});
