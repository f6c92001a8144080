import { randomUUID } from 'node:crypto';
import type { ObjectCreatedEvent } from '../../lambdas/trigger/handler.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './asl.ts';
import { dataBucketLogicalId, type Template } from './synth.ts';

/** An object write as the local S3 server reports it. */
export interface S3Put {
  bucket: string;
  key: string;
  etag?: string;
  versionId?: string;
  size?: number;
  time?: Date;
  /** S3's per-key ordering of writes; made up when absent, as each put has its own. */
  sequencer?: string;
}

let sequence = 0n;

/** Hex, increasing within the process, like S3's (which only orders the writes of one key). */
function nextSequencer(): string {
  sequence += 1n;
  return (BigInt(Date.now()) * 1_000_000n + sequence).toString(16).toUpperCase().padStart(18, '0');
}

/**
 * The EventBridge event S3 emits for a put on a bucket with EventBridge notifications on. The key is the object's
 * own, not URL-encoded: S3 form-encodes keys only in the notifications it sends to SQS, SNS and Lambda.
 */
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
        sequencer: put.sequencer ?? nextSequencer(),
      },
      reason: 'PutObject',
    },
  } as ObjectCreatedEvent & Record<string, unknown>;
}

type Pattern = { [key: string]: Pattern | unknown[] };

const OR = '$or';

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

/** EventBridge matching for the operators a pipeline rule uses (literals, prefix, suffix, wildcard, exists, anything-but, $or). */
export function matchesEventPattern(pattern: Pattern, event: Record<string, unknown>): boolean {
  return Object.entries(pattern).every(([field, expected]) => {
    if (field === OR) return (expected as Pattern[]).some((alternative) => matchesEventPattern(alternative, event));
    const present = event !== null && typeof event === 'object' && field in event;
    const value = present ? event[field] : undefined;
    if (!Array.isArray(expected)) {
      return present && typeof value === 'object' && value !== null && matchesEventPattern(expected, value as Record<string, unknown>);
    }
    const values = Array.isArray(value) ? value : [value];
    return expected.some((m) => values.some((v) => matchesOne(m, v, present)));
  });
}

/**
 * What the rules that route S3 events to the trigger match (the upload rule and the re-run rule), as one pattern
 * (`$or` of theirs), with the data bucket's name filled in.
 */
export function uploadRulePattern(template: Template, bucket: string): Pattern {
  const fromS3 = (pattern: unknown) => ((pattern as { source?: unknown } | undefined)?.source as unknown[] | undefined)?.includes('aws.s3');
  const rules = Object.values(template.Resources).filter((r) => r.Type === 'AWS::Events::Rule' && fromS3(r.Properties?.EventPattern));
  if (rules.length === 0) throw new Error('the template has no AWS::Events::Rule on S3 events');
  const dataBucket = dataBucketLogicalId(template);
  const patterns = rules.map(
    (rule) =>
      JSON.parse(JSON.stringify(rule.Properties!.EventPattern), (_key, value: unknown) => {
        if (value && typeof value === 'object' && 'Ref' in value) {
          if ((value as { Ref: string }).Ref !== dataBucket) throw new Error(`upload rule references ${JSON.stringify(value)}`);
          return bucket;
        }
        return value;
      }) as Pattern,
  );
  return patterns.length === 1 ? patterns[0]! : { [OR]: patterns };
}
