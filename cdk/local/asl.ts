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
 * The state machine's DefinitionString as plain ASL: `Fn::Join` of strings, `Ref` and `Fn::GetAtt` resolved,
 * the data bucket to `bucket` (the one the run reads) and every other resource to a fake ARN.
 */
export function resolveDefinition(template: Template, bucket: string): StateMachineDefinition {
  const machine = onlyResource(template, 'AWS::StepFunctions::StateMachine');
  const dataBucket = dataBucketLogicalId(template);
  const typeOf = (id: string): string => {
    const r = template.Resources[id];
    if (!r) throw new Error(`definition references ${id}, which is not in the template`);
    return r.Type;
  };
  const resolve = (value: unknown): string => {
    if (typeof value === 'string') return value;
    const v = value as Record<string, unknown>;
    if ('Fn::Join' in v) {
      const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
      return parts.map(resolve).join(sep);
    }
    if ('Ref' in v) {
      const id = v.Ref as string;
      if (id in PSEUDO) return PSEUDO[id]!;
      return id === dataBucket ? bucket : fakeArn(typeOf(id), id);
    }
    if ('Fn::GetAtt' in v) {
      const [id] = v['Fn::GetAtt'] as [string, string];
      return fakeArn(typeOf(id), id);
    }
    throw new Error(`cannot resolve ${JSON.stringify(value)} in the state machine definition`);
  };
  return JSON.parse(resolve(machine.properties.DefinitionString)) as StateMachineDefinition;
}
