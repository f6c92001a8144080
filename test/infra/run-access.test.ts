import { describe, expect, it } from 'vitest';
import { LocalAccount } from '../../cdk/local/account.ts';
import { resolveValue } from '../../cdk/local/asl.ts';
import { isAllowed, type Principal, type S3Request } from '../../cdk/local/iam-policy.ts';
import { synthesizeTemplate } from '../../cdk/local/synth.ts';
import { resolveLatestInit } from '../../core/latest-model.ts';
import { MAX_ROLE_POLICY_CHARS, RUN_ROLE_PATH, runAccessName, runPolicy, type RunAccessConfig } from '../../core/run-access.ts';
import type { ObjectStore } from '../../core/store.ts';
import type { RunSpec } from '../../core/run-spec.ts';
import type { IamPolicy } from '../../core/s3-access.ts';
import { awsRunAccount } from '../../lambdas/run-access/account.ts';
import { grantRun, runJobDefinition } from '../../lambdas/run-access/grant.ts';
import { revokeRun } from '../../lambdas/run-access/revoke.ts';

const BUCKET = 'data-bucket';
const spec = (over: Partial<RunSpec> & { init?: string } = {}): RunSpec => {
  const { init, ...rest } = over;
  return { runId: 'tiles-0123456789ab', bucket: BUCKET, dataset: 'tiles', options: init ? { init } : {}, ...rest };
};

const template = synthesizeTemplate('aws');
/** The run boundary exactly as the template defines it, resolved for this bucket. */
const boundary = (() => {
  const [, policy] = Object.entries(template.Resources).find(([, r]) => r.Type === 'AWS::IAM::ManagedPolicy')!;
  return resolveValue(template, BUCKET, (policy.Properties as { PolicyDocument: unknown }).PolicyDocument) as IamPolicy;
})();

const as = (policy: IamPolicy): Principal => ({ name: 'run-role', policies: [policy], boundary });
/** A data bucket holding only models/<dataset>/latest.json naming `model` (none when `model` is undefined). */
const published = (dataset: string, model?: string): ObjectStore =>
  ({
    uri: `s3://${BUCKET}/`,
    tryGet: async (key: string) =>
      model && key === `models/${dataset}/latest.json` ? new TextEncoder().encode(JSON.stringify({ model, metrics: { model: 'ViT-B-32' } })) : undefined,
  }) as unknown as ObjectStore;
const get = (key: string, bucket = BUCKET): S3Request => ({ action: 's3:GetObject', resource: `arn:aws:s3:::${bucket}/${key}` });
const put = (key: string): S3Request => ({ action: 's3:PutObject', resource: `arn:aws:s3:::${BUCKET}/${key}` });
const del = (key: string): S3Request => ({ action: 's3:DeleteObject', resource: `arn:aws:s3:::${BUCKET}/${key}` });
const list = (prefix: string, bucket = BUCKET): S3Request => ({ action: 's3:ListBucket', resource: `arn:aws:s3:::${bucket}`, prefix });

describe('the local IAM decision', () => {
  const allow = (resource: string, actions = ['s3:GetObject']): IamPolicy => ({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: actions, Resource: [resource] }] });
  it('needs an Allow, lets any Deny win, and lets the boundary only narrow', () => {
    const deny = { Statement: [{ Effect: 'Deny', Action: 's3:*', Resource: 'arn:aws:s3:::b/secret/*' }] };
    expect(isAllowed({ name: 'p', policies: [] }, get('a', 'b'))).toBe(false);
    expect(isAllowed({ name: 'p', policies: [allow('arn:aws:s3:::b/*')] }, get('secret/x', 'b'))).toBe(true);
    expect(isAllowed({ name: 'p', policies: [allow('arn:aws:s3:::b/*'), deny] }, get('secret/x', 'b'))).toBe(false);
    expect(isAllowed({ name: 'p', policies: [allow('arn:aws:s3:::b/*')], boundary: allow('arn:aws:s3:::b/public/*') }, get('x', 'b'))).toBe(false);
    expect(isAllowed({ name: 'p', policies: [allow('arn:aws:s3:::b/public/x')], boundary: allow('arn:aws:s3:::b/*') }, get('public/x', 'b'))).toBe(true);
    expect(isAllowed({ name: 'p', policies: [allow('arn:aws:s3:::b/*')] }, { action: 's3:PutObject', resource: 'arn:aws:s3:::b/x' })).toBe(false);
    // `?` is one character, `*` any run of them, across `/` too.
    expect(isAllowed({ name: 'p', policies: [allow('arn:aws:s3:::b/a?c/*')] }, get('abc/d/e', 'b'))).toBe(true);
    expect(isAllowed({ name: 'p', policies: [allow('arn:aws:s3:::b/a?c/*')] }, get('ac/d', 'b'))).toBe(false);
  });
});

describe("a run's own role", () => {
  const mine = as(runPolicy(spec({ init: 'random:ViT-tiny' }), 'aws'));
  const run = 'runs/tiles-0123456789ab';

  it("reaches its own run's shards, checkpoints and final/ files, within the boundary", () => {
    for (const r of [
      get(`${run}/shards/shard-00000.rsshard`),
      list(`${run}/shards/`),
      get(`${run}/checkpoints/latest.json`),
      list(`${run}/checkpoints/step-2/`),
      put(`${run}/checkpoints/step-2/model.safetensors`),
      del(`${run}/checkpoints/step-1/model.safetensors`),
      put(`${run}/final/model.safetensors`),
      put('_tmp/6f1c/model.safetensors'),
    ]) {
      expect(isAllowed(mine, r), JSON.stringify(r)).toBe(true);
    }
  });

  it("is refused another run's keys, every dataset's files, the run's report and plan, and models/", () => {
    const other = 'runs/tiles-ba9876543210';
    for (const r of [
      get(`${other}/shards/shard-00000.rsshard`),
      list(`${other}/checkpoints/`),
      put(`${other}/final/model.safetensors`),
      put(`${other}/checkpoints/step-9/model.safetensors`),
      del(`${other}/checkpoints/latest.json`),
      get(`${other}/final/model.safetensors`),
      get('datasets/tiles/captions.csv'),
      get('datasets/tiles/base.pt'),
      list('datasets/tiles/'),
      get(`${run}/validation.json`),
      get(`${run}/shard-plan.json`),
      del(`${run}/final/model.safetensors`),
      get('models/tiles/latest.json'),
      put('models/tiles/latest.json'),
      list(''),
      list('runs/'),
    ]) {
      expect(isAllowed(mine, r), JSON.stringify(r)).toBe(false);
    }
  });

  it('reads exactly the base checkpoint its init names, wherever Validate lets it be', async () => {
    const own = as(runPolicy(spec({ init: `s3://${BUCKET}/datasets/tiles/RemoteCLIP-ViT-B-32.pt` }), 'aws'));
    expect(isAllowed(own, get('datasets/tiles/RemoteCLIP-ViT-B-32.pt'))).toBe(true);
    expect(isAllowed(own, list('datasets/tiles/RemoteCLIP-ViT-B-32.pt'))).toBe(true);
    expect(isAllowed(own, get('datasets/tiles/other.pt'))).toBe(false);
    expect(isAllowed(own, get('datasets/other/RemoteCLIP-ViT-B-32.pt'))).toBe(false);

    const models = as(runPolicy(spec({ baseModel: `s3://${BUCKET}/models/base/RN50.pt` }), 'aws'));
    expect(isAllowed(models, get('models/base/RN50.pt'))).toBe(true);
    expect(isAllowed(models, get('models/base/ViT-L-14.pt'))).toBe(false);

    // latest: resolved by Validate to the one published model latest.json names (and its config), all it may read.
    const options = await resolveLatestInit({ init: 'latest' }, 'tiles', published('tiles', 'runs/tiles-00000000aaaa/final/model.safetensors'));
    expect(options).toEqual({ init: `s3://${BUCKET}/runs/tiles-00000000aaaa/final/model.safetensors`, model: 'ViT-B-32' });
    const latest = as(runPolicy({ ...spec(), options }, 'aws'));
    expect(isAllowed(latest, get('runs/tiles-00000000aaaa/final/model.safetensors'))).toBe(true);
    expect(isAllowed(latest, get('runs/tiles-00000000bbbb/final/model.safetensors'))).toBe(false);
    expect(isAllowed(latest, get('runs/tiles-00000000aaaa/final/metrics.json'))).toBe(false);
    expect(isAllowed(latest, get('models/tiles/latest.json'))).toBe(false);
    expect(() => runPolicy(spec({ init: 'latest' }), 'aws')).toThrow(/must be resolved/);

    // Another bucket: only as one of the deployment's sources does the boundary let it through.
    const external = runPolicy(spec({ init: 's3://shared-models/base/RN50.pt' }), 'aws');
    expect(isAllowed({ name: 'r', policies: [external] }, get('base/RN50.pt', 'shared-models'))).toBe(true);
    expect(isAllowed(as(external), get('base/RN50.pt', 'shared-models'))).toBe(false);
  });

  it('names a dataset with IAM wildcard characters literally', () => {
    const init = `s3://${BUCKET}/datasets/a*b?$/x.pt`;
    expect(JSON.stringify(runPolicy(spec({ dataset: 'a*b?$', init }), 'aws'))).toContain('datasets/a${*}b${?}${$}/x.pt');
    const odd = as(runPolicy(spec({ dataset: 'a*b?$', init }), 'aws'));
    expect(isAllowed(odd, get('datasets/a*b?$/x.pt'))).toBe(true);
    expect(isAllowed(odd, get('datasets/aXXb!$/x.pt'))).toBe(false);
    expect(isAllowed(odd, get('datasets/ab?$/x.pt'))).toBe(false);
  });
});

const CONFIG: RunAccessConfig = {
  account: '000000000000',
  partition: 'aws',
  namePrefix: 'rsclip-0a1b2c3d-',
  boundaryArn: 'arn:aws:iam::000000000000:policy/RunBoundary',
  templateJobDefinitionArn: 'arn:aws:batch:us-east-1:000000000000:job-definition/Template:3',
};
const TEMPLATE = {
  jobDefinitionName: 'Template',
  jobDefinitionArn: CONFIG.templateJobDefinitionArn,
  revision: 3,
  status: 'ACTIVE',
  type: 'container',
  containerProperties: { image: 'worker:1', executionRoleArn: 'arn:aws:iam::000000000000:role/Exec', resourceRequirements: [{ type: 'GPU' as const, value: '1' }] },
  retryStrategy: { attempts: 5 },
  timeout: { attemptDurationSeconds: 43200 },
  platformCapabilities: ['EC2' as const],
};
const account = () => new LocalAccount(new Map([[CONFIG.boundaryArn, boundary]]), [TEMPLATE]);

describe('grant and revoke', () => {
  it("creates the run's role with its policy under the boundary, and its job definition as a copy of the template with that role", async () => {
    const a = account();
    const granted = await grantRun(a, CONFIG, spec());
    const name = runAccessName(CONFIG.namePrefix, 'tiles-0123456789ab');
    expect(name).toMatch(/^rsclip-0a1b2c3d-[0-9a-f]{32}$/);
    expect(name.length).toBeLessThanOrEqual(64);
    expect(granted).toEqual({
      roleName: name,
      roleArn: `arn:aws:iam::000000000000:role${RUN_ROLE_PATH}${name}`,
      jobDefinitionArn: `arn:aws:batch:us-east-1:000000000000:job-definition/${name}:1`,
    });
    const definition = (await a.jobDefinition(granted.jobDefinitionArn))!;
    expect(definition.containerProperties).toEqual({ ...TEMPLATE.containerProperties, jobRoleArn: granted.roleArn });
    expect(definition).toMatchObject({ retryStrategy: TEMPLATE.retryStrategy, timeout: TEMPLATE.timeout, platformCapabilities: ['EC2'] });
    const principal = a.jobPrincipal(granted.jobDefinitionArn);
    expect(principal.boundary).toBe(boundary);
    expect(isAllowed(principal, put('runs/tiles-0123456789ab/final/model.safetensors'))).toBe(true);
    expect(isAllowed(principal, put('runs/tiles-ba9876543210/final/model.safetensors'))).toBe(false);
    // The template itself runs as nobody.
    expect(() => a.jobPrincipal(TEMPLATE.jobDefinitionArn)).toThrow(/has no job role/);

    // A retried grant reuses the role; Batch adds a revision.
    const again = await grantRun(a, CONFIG, spec());
    expect(again.roleArn).toBe(granted.roleArn);
    expect(again.jobDefinitionArn).toMatch(/:2$/);

    expect(await revokeRun(a, CONFIG, 'tiles-0123456789ab')).toEqual({ runId: 'tiles-0123456789ab', role: true, jobDefinitions: 2 });
    expect(a.roleNames).toEqual([]);
    expect(a.activeJobDefinitionArns).toEqual([TEMPLATE.jobDefinitionArn]);
    expect(() => a.jobPrincipal(granted.jobDefinitionArn)).toThrow(/not ACTIVE/);
    // Nothing left: a revoke again (the ended-runs rule after the failure path) finds nothing and succeeds.
    expect(await revokeRun(a, CONFIG, 'tiles-0123456789ab')).toEqual({ runId: 'tiles-0123456789ab', role: false, jobDefinitions: 0 });
  });

  it("refuses a run whose role policy would be longer than IAM allows, or whose init latest is unresolved, before creating anything", async () => {
    const a = account();
    const init = `s3://${BUCKET}/datasets/tiles/${'x'.repeat(MAX_ROLE_POLICY_CHARS)}.pt`;
    await expect(grantRun(a, CONFIG, spec({ init }))).rejects.toThrow(/role policy is \d+ characters, over IAM's 10240/);
    await expect(grantRun(a, CONFIG, spec({ init: 'latest' }))).rejects.toThrow(/init "latest" must be resolved/);
    expect(a.roleNames).toEqual([]);
  });

  it('copies the template without the fields Describe adds', () => {
    const copy = runJobDefinition(TEMPLATE, 'n', 'arn:role');
    expect(copy).not.toHaveProperty('jobDefinitionArn');
    expect(copy).not.toHaveProperty('revision');
    expect(copy).not.toHaveProperty('status');
    expect(copy.jobDefinitionName).toBe('n');
  });
});

describe('the AWS calls', () => {
  type Sent = { command: string; input: Record<string, unknown> };
  const fake = (answer: (s: Sent) => unknown) => {
    const sent: Sent[] = [];
    const client = {
      send: async (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
        const s = { command: command.constructor.name, input: command.input };
        sent.push(s);
        return answer(s);
      },
    };
    return { sent, client: client as never };
  };
  const error = (name: string) => Object.assign(new Error(name), { name });

  it('creates the role with the boundary, path, trust and tag, and reuses one that exists', async () => {
    const iam = fake((s) => {
      if (s.command === 'CreateRoleCommand') throw error('EntityAlreadyExistsException');
      return { Role: { Arn: 'arn:existing' } };
    });
    const batch = fake((s) => (s.command === 'DescribeJobDefinitionsCommand' ? { jobDefinitions: [TEMPLATE] } : { jobDefinitionArn: 'arn:def:1' }));
    const granted = await grantRun(awsRunAccount(iam.client, batch.client), CONFIG, spec());
    expect(granted.roleArn).toBe('arn:existing');
    const create = iam.sent[0]!;
    expect(create.input).toMatchObject({ Path: RUN_ROLE_PATH, PermissionsBoundary: CONFIG.boundaryArn, Tags: [{ Key: 'rsclip:runId', Value: 'tiles-0123456789ab' }] });
    expect(JSON.parse(create.input.AssumeRolePolicyDocument as string).Statement[0]).toMatchObject({
      Principal: { Service: 'ecs-tasks.amazonaws.com' },
      Condition: { StringEquals: { 'aws:SourceAccount': '000000000000' } },
    });
    expect(iam.sent.map((s) => s.command)).toEqual(['CreateRoleCommand', 'GetRoleCommand', 'PutRolePolicyCommand']);
    expect(JSON.parse(iam.sent[2]!.input.PolicyDocument as string)).toEqual(runPolicy(spec(), 'aws'));
    expect(batch.sent.map((s) => s.command)).toEqual(['DescribeJobDefinitionsCommand', 'RegisterJobDefinitionCommand']);
    expect((batch.sent[1]!.input.containerProperties as { jobRoleArn: string }).jobRoleArn).toBe('arn:existing');
  });

  it('revokes what exists, page by page, and takes a missing role as revoked', async () => {
    const iam = fake(() => {
      throw error('NoSuchEntityException');
    });
    const pages = [{ jobDefinitions: [{ jobDefinitionArn: 'arn:d:1' }], nextToken: 't' }, { jobDefinitions: [{ jobDefinitionArn: 'arn:d:2' }] }];
    const batch = fake((s) => (s.command === 'DescribeJobDefinitionsCommand' ? pages.shift() : {}));
    const revoked = await revokeRun(awsRunAccount(iam.client, batch.client), CONFIG, 'tiles-0123456789ab');
    expect(revoked).toEqual({ runId: 'tiles-0123456789ab', role: false, jobDefinitions: 2 });
    expect(batch.sent.filter((s) => s.command === 'DeregisterJobDefinitionCommand').map((s) => s.input.jobDefinition)).toEqual(['arn:d:1', 'arn:d:2']);
    expect(batch.sent[0]!.input).toMatchObject({ jobDefinitionName: runAccessName(CONFIG.namePrefix, 'tiles-0123456789ab'), status: 'ACTIVE' });
    const iamFails = fake(() => {
      throw error('ServiceFailureException');
    });
    await expect(revokeRun(awsRunAccount(iamFails.client, fake(() => ({})).client), CONFIG, 'r')).rejects.toThrow('ServiceFailureException');
  });
});
