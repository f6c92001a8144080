import type { RegisterJobDefinitionRequest } from '@aws-sdk/client-batch';
import { MAX_ROLE_POLICY_CHARS, RUN_ACCESS_ENV, runAccessConfig, type RunAccessConfig } from '../../core/run-access.ts';
import type { IamPolicy } from '../../core/s3-access.ts';
import type { JobDefinition, NewRole, RunAccount } from '../../lambdas/run-access/account.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION, resolveValue } from './asl.ts';
import type { PolicyDocument, Principal } from './iam-policy.ts';
import type { Template } from './synth.ts';

/** IAM's rules for CreateRole (RoleName, Path) and Batch's for a job definition name. */
const ROLE_NAME = /^[\w+=,.@-]{1,64}$/;
const ROLE_PATH = /^\/([\x21-\x7e]{0,510}\/)?$/;
const JOB_DEFINITION_NAME = /^[A-Za-z0-9_-]{1,128}$/;

interface Role {
  arn: string;
  boundaryArn: string;
  policies: Map<string, string>;
}

const refused = (name: string, message: string) => Object.assign(new Error(message), { name });

/**
 * The IAM roles and Batch job definitions of a run, in memory: what the grant and revoke functions do to an AWS
 * account, under the quotas and name rules AWS applies, so the local runner trains as the role a Batch job would
 * get. `policies` resolves a managed policy ARN (the boundary) to its document, as the template defines it.
 */
export class LocalAccount implements RunAccount {
  private readonly roles = new Map<string, Role>();
  private readonly definitions = new Map<string, { definition: JobDefinition; active: boolean }>();
  private readonly revisions = new Map<string, number>();
  private readonly templates: ReadonlySet<string>;

  constructor(
    private readonly managedPolicies: ReadonlyMap<string, IamPolicy>,
    templates: readonly JobDefinition[],
  ) {
    for (const t of templates) this.definitions.set(t.jobDefinitionArn!, { definition: t, active: true });
    this.templates = new Set(templates.map((t) => t.jobDefinitionArn!));
  }

  /** Roles that exist, by name. */
  get roleNames(): string[] {
    return [...this.roles.keys()];
  }

  /** The roles and the active job definitions other than the templates: after a run, what its revoke left behind. */
  runAccessLeft(): string[] {
    return [...this.roleNames, ...this.activeJobDefinitionArns.filter((arn) => !this.templates.has(arn))];
  }

  get activeJobDefinitionArns(): string[] {
    return [...this.definitions].filter(([, d]) => d.active).map(([arn]) => arn);
  }

  async jobDefinition(arn: string): Promise<JobDefinition | undefined> {
    return this.definitions.get(arn)?.definition;
  }

  async createRole(role: NewRole): Promise<string> {
    if (!ROLE_NAME.test(role.name)) throw refused('ValidationError', `CreateRole: role name ${JSON.stringify(role.name)} breaks IAM's rule (1-64 of [\\w+=,.@-])`);
    if (!ROLE_PATH.test(role.path)) throw refused('ValidationError', `CreateRole: path ${JSON.stringify(role.path)} breaks IAM's rule`);
    if (!this.managedPolicies.has(role.boundaryArn)) throw refused('NoSuchEntityException', `CreateRole: permissions boundary ${role.boundaryArn} does not exist`);
    const existing = this.roles.get(role.name);
    if (existing) return existing.arn;
    const arn = `arn:aws:iam::${LOCAL_ACCOUNT}:role${role.path}${role.name}`;
    this.roles.set(role.name, { arn, boundaryArn: role.boundaryArn, policies: new Map() });
    return arn;
  }

  private roleByArn(arn: string | undefined): Role | undefined {
    return [...this.roles.values()].find((r) => r.arn === arn);
  }

  private role(name: string, call: string): Role {
    const role = this.roles.get(name);
    if (!role) throw refused('NoSuchEntityException', `${call}: the role with name ${name} cannot be found`);
    return role;
  }

  async putRolePolicy(roleName: string, name: string, document: string): Promise<void> {
    const role = this.role(roleName, 'PutRolePolicy');
    JSON.parse(document);
    const others = [...role.policies].filter(([n]) => n !== name).reduce((n, [, d]) => n + d.replace(/\s/g, '').length, 0);
    const total = others + document.replace(/\s/g, '').length;
    if (total > MAX_ROLE_POLICY_CHARS) {
      throw refused('LimitExceededException', `PutRolePolicy: the role's inline policies would be ${total} characters, over IAM's ${MAX_ROLE_POLICY_CHARS}`);
    }
    role.policies.set(name, document);
  }

  async deleteRolePolicy(roleName: string, name: string): Promise<boolean> {
    return this.roles.get(roleName)?.policies.delete(name) ?? false;
  }

  async deleteRole(name: string): Promise<boolean> {
    const role = this.roles.get(name);
    if (!role) return false;
    if (role.policies.size) throw refused('DeleteConflictException', `DeleteRole: ${name} still has inline policies`);
    return this.roles.delete(name);
  }

  async registerJobDefinition(d: RegisterJobDefinitionRequest): Promise<string> {
    const name = d.jobDefinitionName ?? '';
    if (!JOB_DEFINITION_NAME.test(name)) throw refused('ClientException', `RegisterJobDefinition: name ${JSON.stringify(name)} breaks Batch's rule (1-128 of [A-Za-z0-9_-])`);
    const roleArn = d.containerProperties?.jobRoleArn;
    if (roleArn && !this.roleByArn(roleArn)) {
      throw refused('ClientException', `RegisterJobDefinition: job role ${roleArn} does not exist (iam:PassRole)`);
    }
    const revision = (this.revisions.get(name) ?? 0) + 1;
    this.revisions.set(name, revision);
    const arn = `arn:aws:batch:${LOCAL_REGION}:${LOCAL_ACCOUNT}:job-definition/${name}:${revision}`;
    this.definitions.set(arn, { definition: { ...d, jobDefinitionArn: arn, revision, status: 'ACTIVE' }, active: true });
    return arn;
  }

  async activeJobDefinitions(name: string): Promise<string[]> {
    return this.activeJobDefinitionArns.filter((arn) => this.definitions.get(arn)!.definition.jobDefinitionName === name);
  }

  async deregisterJobDefinition(arn: string): Promise<void> {
    const d = this.definitions.get(arn);
    if (d) d.active = false;
  }

  /**
   * Who a SubmitJob of `jobDefinitionArn` runs as: its job role, with that role's inline policies and boundary.
   * Batch refuses a job definition that is not ACTIVE, as it does an unknown one.
   */
  jobPrincipal(jobDefinitionArn: string): Principal {
    const d = this.definitions.get(jobDefinitionArn);
    if (!d?.active) throw refused('Batch.ClientException', `SubmitJob: job definition ${jobDefinitionArn} is not ACTIVE (or does not exist)`);
    const roleArn = d.definition.containerProperties?.jobRoleArn;
    const role = this.roleByArn(roleArn);
    if (!role) throw refused('Batch.ClientException', `SubmitJob: job definition ${jobDefinitionArn} has no job role that exists (${roleArn ?? 'none'})`);
    return {
      name: role.arn,
      policies: [...role.policies.values()].map((p) => JSON.parse(p) as IamPolicy),
      boundary: this.managedPolicies.get(role.boundaryArn),
    };
  }
}

/**
 * The account a deployment of `template` starts with: its managed policies (the run boundary) and job definitions
 * (the template), and the run-access functions' configuration as their environment sets it; no config when the
 * template has none (a stage without Batch).
 */
export function accountOfTemplate(template: Template, bucket: string): { account: LocalAccount; config?: RunAccessConfig } {
  const policies = new Map<string, IamPolicy>();
  const definitions: JobDefinition[] = [];
  let config: RunAccessConfig | undefined;
  for (const [id, r] of Object.entries(template.Resources)) {
    const props = (r.Properties ?? {}) as { PolicyDocument?: unknown; Type?: string; Environment?: { Variables?: Record<string, unknown> } };
    const arn = () => resolveValue(template, bucket, { Ref: id }) as string;
    if (r.Type === 'AWS::IAM::ManagedPolicy') policies.set(arn(), resolveValue(template, bucket, props.PolicyDocument) as IamPolicy);
    // What a run's copy needs of it locally is that it exists and has a type; the worker is this process.
    if (r.Type === 'AWS::Batch::JobDefinition') {
      definitions.push({ jobDefinitionName: id, jobDefinitionArn: arn(), revision: 1, status: 'ACTIVE', type: props.Type, containerProperties: { image: 'local' } });
    }
    const env = props.Environment?.Variables;
    // The grant and revoke functions share one configuration.
    if (r.Type === 'AWS::Lambda::Function' && env?.[RUN_ACCESS_ENV.namePrefix] !== undefined) {
      config = runAccessConfig(resolveValue(template, bucket, env) as Record<string, string>);
    }
  }
  return { account: new LocalAccount(policies, definitions), config };
}

/**
 * Who each Lambda function and the state machine of `template` act as, by logical ID: the policies the template
 * attaches to their roles (AWS::IAM::Policy resources naming the role), resolved for `bucket`.
 */
export function templatePrincipals(template: Template, bucket: string): Map<string, Principal> {
  type PolicyResource = { Roles?: { Ref?: string }[]; PolicyDocument: unknown };
  const policies = Object.values(template.Resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy')
    .map((r) => r.Properties as unknown as PolicyResource);
  const principals = new Map<string, Principal>();
  for (const [id, r] of Object.entries(template.Resources)) {
    const field = ({ 'AWS::Lambda::Function': 'Role', 'AWS::StepFunctions::StateMachine': 'RoleArn' } as Record<string, string>)[r.Type];
    const roleRef = field ? (r.Properties?.[field] as { 'Fn::GetAtt'?: [string, string] } | undefined) : undefined;
    const role = roleRef?.['Fn::GetAtt']?.[0];
    if (!role) continue;
    const documents = policies
      .filter((p) => p.Roles?.some((x) => x.Ref === role))
      .map((p) => resolveValue(template, bucket, p.PolicyDocument) as PolicyDocument);
    principals.set(id, { name: `arn:aws:iam::${LOCAL_ACCOUNT}:role/${role}`, policies: documents });
  }
  return principals;
}
