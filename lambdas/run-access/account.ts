import {
  BatchClient,
  DeregisterJobDefinitionCommand,
  DescribeJobDefinitionsCommand,
  RegisterJobDefinitionCommand,
  type JobDefinition,
  type RegisterJobDefinitionRequest,
} from '@aws-sdk/client-batch';
import {
  CreateRoleCommand,
  DeleteRoleCommand,
  DeleteRolePolicyCommand,
  GetRoleCommand,
  IAMClient,
  PutRolePolicyCommand,
  type Tag,
} from '@aws-sdk/client-iam';

export type { JobDefinition, RegisterJobDefinitionRequest } from '@aws-sdk/client-batch';

export interface NewRole {
  name: string;
  path: string;
  trust: object;
  boundaryArn: string;
  description: string;
  tags: Tag[];
}

/**
 * The IAM and Batch calls that give a run its role and job definition and take them back: AWS here, an in-memory
 * account in the local runner (cdk/local/account.ts). Deletes of what is already gone succeed, so that a revoke
 * can run after any failure, and again.
 */
export interface RunAccount {
  jobDefinition(arn: string): Promise<JobDefinition | undefined>;
  /** The role's ARN; an existing role of that name (a retried grant) is returned as it is. */
  createRole(role: NewRole): Promise<string>;
  putRolePolicy(role: string, name: string, document: string): Promise<void>;
  deleteRolePolicy(role: string, name: string): Promise<boolean>;
  deleteRole(role: string): Promise<boolean>;
  registerJobDefinition(definition: RegisterJobDefinitionRequest): Promise<string>;
  /** ARNs of the ACTIVE revisions of the job definition `name`. */
  activeJobDefinitions(name: string): Promise<string[]>;
  deregisterJobDefinition(arn: string): Promise<void>;
}

const named = (e: unknown, name: string) => (e as { name?: string }).name === name;

/** `false` where IAM says the entity does not exist. */
async function unlessMissing(call: () => Promise<unknown>): Promise<boolean> {
  try {
    await call();
    return true;
  } catch (e) {
    if (named(e, 'NoSuchEntityException')) return false;
    throw e;
  }
}

export function awsRunAccount(iam: Pick<IAMClient, 'send'> = new IAMClient({}), batch: Pick<BatchClient, 'send'> = new BatchClient({})): RunAccount {
  return {
    async jobDefinition(arn) {
      const res = await batch.send(new DescribeJobDefinitionsCommand({ jobDefinitions: [arn] }));
      return res.jobDefinitions?.[0];
    },
    async createRole(role) {
      try {
        const res = await iam.send(
          new CreateRoleCommand({
            RoleName: role.name,
            Path: role.path,
            AssumeRolePolicyDocument: JSON.stringify(role.trust),
            PermissionsBoundary: role.boundaryArn,
            Description: role.description,
            Tags: role.tags,
          }),
        );
        return res.Role!.Arn!;
      } catch (e) {
        if (!named(e, 'EntityAlreadyExistsException')) throw e;
        const existing = await iam.send(new GetRoleCommand({ RoleName: role.name }));
        return existing.Role!.Arn!;
      }
    },
    async putRolePolicy(role, name, document) {
      await iam.send(new PutRolePolicyCommand({ RoleName: role, PolicyName: name, PolicyDocument: document }));
    },
    deleteRolePolicy: (role, name) => unlessMissing(() => iam.send(new DeleteRolePolicyCommand({ RoleName: role, PolicyName: name }))),
    deleteRole: (role) => unlessMissing(() => iam.send(new DeleteRoleCommand({ RoleName: role }))),
    async registerJobDefinition(definition) {
      const res = await batch.send(new RegisterJobDefinitionCommand(definition));
      return res.jobDefinitionArn!;
    },
    async activeJobDefinitions(name) {
      const arns: string[] = [];
      let nextToken: string | undefined;
      do {
        const res = await batch.send(new DescribeJobDefinitionsCommand({ jobDefinitionName: name, status: 'ACTIVE', nextToken }));
        for (const d of res.jobDefinitions ?? []) if (d.jobDefinitionArn) arns.push(d.jobDefinitionArn);
        nextToken = res.nextToken;
      } while (nextToken);
      return arns;
    },
    async deregisterJobDefinition(arn) {
      await batch.send(new DeregisterJobDefinitionCommand({ jobDefinition: arn }));
    },
  };
}
