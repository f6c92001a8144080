import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import { dataBucketLogicalId, onlyResource, type Template } from './synth.ts';

export const LOCAL_REGION = 'us-east-1';
export const LOCAL_ACCOUNT = '000000000000';

/** Stand-in ARNs for the resources a definition references; only their shape matters locally. */
function fakeArn(type: string, logicalId: string): string {
  const at = `${LOCAL_REGION}:${LOCAL_ACCOUNT}`;
  switch (type) {
    case 'AWS::Lambda::Function':
      return `arn:aws:lambda:${at}:function:${logicalId}`;
    case 'AWS::SNS::Topic':
      return `arn:aws:sns:${at}:${logicalId}`;
    case 'AWS::Batch::JobDefinition':
      return `arn:aws:batch:${at}:job-definition/${logicalId}:1`;
    case 'AWS::Batch::JobQueue':
      return `arn:aws:batch:${at}:job-queue/${logicalId}`;
    case 'AWS::StepFunctions::Activity':
      return `arn:aws:states:${at}:activity:${logicalId}`;
    case 'AWS::IAM::ManagedPolicy':
      return `arn:aws:iam::${LOCAL_ACCOUNT}:policy/${logicalId}`;
    case 'AWS::IAM::Role':
      return `arn:aws:iam::${LOCAL_ACCOUNT}:role/${logicalId}`;
    case 'AWS::StepFunctions::StateMachine':
      return `arn:aws:states:${at}:stateMachine:${logicalId}`;
    case 'AWS::Logs::LogGroup':
      return `arn:aws:logs:${at}:log-group:${logicalId}:*`;
    case 'AWS::SQS::Queue':
      return `arn:aws:sqs:${at}:${logicalId}`;
    default:
      throw new Error(`no local stand-in for a reference to ${logicalId} (${type})`);
  }
}

const PSEUDO: Record<string, string> = {
  'AWS::Partition': 'aws',
  'AWS::Region': LOCAL_REGION,
  'AWS::AccountId': LOCAL_ACCOUNT,
  'AWS::URLSuffix': 'amazonaws.com',
};

/**
 * A template value as plain JSON: `Fn::Join` of strings, `Ref` and `Fn::GetAtt` resolved, the data bucket to
 * `bucket` (the one the run reads) and every other resource to a fake ARN.
 */
export function resolveValue(template: Template, bucket: string, value: unknown): unknown {
  const dataBucket = dataBucketLogicalId(template);
  const typeOf = (id: string): string => {
    const r = template.Resources[id];
    if (!r) throw new Error(`the template references ${id}, which is not in it`);
    return r.Type;
  };
  const resolve = (value: unknown): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    if (Array.isArray(value)) return value.map(resolve);
    const v = value as Record<string, unknown>;
    if ('Fn::Join' in v) {
      const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
      return parts.map(resolve).join(sep);
    }
    if ('Fn::Split' in v) {
      const [sep, source] = v['Fn::Split'] as [string, unknown];
      return (resolve(source) as string).split(sep);
    }
    if ('Fn::Select' in v) {
      const [index, list] = v['Fn::Select'] as [number | string, unknown];
      return (resolve(list) as unknown[])[Number(index)];
    }
    if ('Ref' in v) {
      const id = v.Ref as string;
      if (id in PSEUDO) return PSEUDO[id]!;
      return id === dataBucket ? bucket : fakeArn(typeOf(id), id);
    }
    if ('Fn::GetAtt' in v) {
      const [id, attribute] = v['Fn::GetAtt'] as [string, string];
      if (id === dataBucket && attribute === 'Arn') return `arn:aws:s3:::${bucket}`;
      return fakeArn(typeOf(id), id);
    }
    if (Object.keys(v).some((k) => k.startsWith('Fn::'))) throw new Error(`cannot resolve ${JSON.stringify(value)} in the template`);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)]));
  };
  return resolve(value);
}

/** The state machine's DefinitionString as plain ASL (resolveValue). */
export function resolveDefinition(template: Template, bucket: string): StateMachineDefinition {
  const machine = onlyResource(template, 'AWS::StepFunctions::StateMachine');
  return JSON.parse(resolveValue(template, bucket, machine.properties.DefinitionString) as string) as StateMachineDefinition;
}
