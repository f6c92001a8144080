import { randomUUID } from 'node:crypto';
import type { ObjectCreatedEvent } from '../../lambdas/trigger/handler.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './asl.ts';
import { dataBucketLogicalId, onlyResource, type Template } from './synth.ts';

/** An object write as the local S3 server reports it. */
export interface S3Put {
  bucket: string;
  key: string;
  etag?: string;
  versionId?: string;
  size?: number;
  time?: Date;
}

/** The EventBridge event S3 emits for a put on a bucket with EventBridge notifications on. */
export function objectCreatedEvent(put: S3Put): ObjectCreatedEvent & Record<string, unknown> {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Object Created',
    source: 'aws.s3',
    account: LOCAL_ACCOUNT,
    time: (put.time ?? new Date()).toISOString(),
    region: LOCAL_REGION,
    resources: [`arn:aws:s3:::${put.bucket}`],
    detail: {
      version: '0',
      bucket: { name: put.bucket },
      object: {
        key: put.key,
        ...(put.size !== undefined ? { size: put.size } : {}),
        ...(put.etag !== undefined ? { etag: put.etag.replace(/"/g, '') } : {}),
        ...(put.versionId !== undefined ? { 'version-id': put.versionId } : {}),
      },
      reason: 'PutObject',
    },
  } as ObjectCreatedEvent & Record<string, unknown>;
}

type Pattern = { [key: string]: Pattern | unknown[] };

function wildcardRegExp(pattern: string): RegExp {
  const parts = pattern.split(/(?<!\\)\*/).map((p) => p.replace(/\\\*/g, '*').replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('.*')}$`, 's');
}

function matchesOne(matcher: unknown, value: unknown, present: boolean): boolean {
  if (matcher === null || typeof matcher !== 'object') return present && value === matcher;
  const [op, arg] = Object.entries(matcher as Record<string, unknown>)[0] ?? [];
  const text = typeof value === 'string' ? value : undefined;
  switch (op) {
    case 'exists':
      return present === arg;
    case 'prefix':
      return text !== undefined && text.startsWith(arg as string);
    case 'suffix':
      return text !== undefined && text.endsWith(arg as string);
    case 'wildcard':
      return text !== undefined && wildcardRegExp(arg as string).test(text);
    case 'equals-ignore-case':
      return text !== undefined && text.toLowerCase() === (arg as string).toLowerCase();
    case 'anything-but':
      return present && !(Array.isArray(arg) ? arg : [arg]).some((a) => matchesOne(a, value, present));
    default:
      throw new Error(`event pattern operator ${JSON.stringify(op)} is not supported locally`);
  }
}

/** EventBridge matching for the operators a pipeline rule uses (literals, prefix, suffix, wildcard, exists, anything-but). */
export function matchesEventPattern(pattern: Pattern, event: Record<string, unknown>): boolean {
  return Object.entries(pattern).every(([field, expected]) => {
    const present = event !== null && typeof event === 'object' && field in event;
    const value = present ? event[field] : undefined;
    if (!Array.isArray(expected)) {
      return present && typeof value === 'object' && value !== null && matchesEventPattern(expected, value as Record<string, unknown>);
    }
    const values = Array.isArray(value) ? value : [value];
    return expected.some((m) => values.some((v) => matchesOne(m, v, present)));
  });
}

/** The upload rule's EventPattern from the template, with the data bucket's name filled in. */
export function uploadRulePattern(template: Template, bucket: string): Pattern {
  const rule = onlyResource(template, 'AWS::Events::Rule', (p) => p.EventPattern !== undefined);
  const dataBucket = dataBucketLogicalId(template);
  return JSON.parse(JSON.stringify(rule.properties.EventPattern), (_key, value: unknown) => {
    if (value && typeof value === 'object' && 'Ref' in value) {
      if ((value as { Ref: string }).Ref !== dataBucket) throw new Error(`upload rule references ${JSON.stringify(value)}`);
      return bucket;
    }
    return value;
  }) as Pattern;
}
