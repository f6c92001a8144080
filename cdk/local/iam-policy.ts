/**
 * IAM's decision on S3 requests for the principals of the template as the local runner runs them (each Lambda's
 * role, the state machine's, a run's role for the worker): allowed when one of its policies allows the action on
 * the resource, none denies it, and its permissions boundary allows it too, else AccessDenied. Written here because
 * the policy simulators on npm are AGPL-licensed.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { S3Client } from '@aws-sdk/client-s3';

/** An identity policy or boundary as a template holds it (ours write only Allow; CDK's may hold more). */
export interface PolicyDocument {
  Statement: {
    Effect: string;
    Action: string | readonly string[];
    Resource: string | readonly string[];
    Condition?: Record<string, Record<string, string | readonly string[]>>;
  }[];
}

/** Who makes a request: its identity policies, and the permissions boundary that caps them. */
export interface Principal {
  name: string;
  policies: readonly PolicyDocument[];
  boundary?: PolicyDocument;
}

export interface S3Request {
  action: string;
  resource: string;
  /** s3:prefix of a ListBucket. */
  prefix?: string;
}

/** An IAM pattern (Resource, StringLike): `*` any run of characters, `?` one; `${*}`, `${?}`, `${$}` are literal. */
function patternRegex(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const literal = /^\$\{([*?$])\}/.exec(pattern.slice(i));
    if (literal) {
      out += `\\${literal[1]}`;
      i += literal[0].length - 1;
    } else if (pattern[i] === '*') out += '.*';
    else if (pattern[i] === '?') out += '.';
    else out += pattern[i]!.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(`^${out}$`, 's');
}

const matches = (patterns: string | readonly string[], value: string) => [patterns].flat().some((p) => patternRegex(p).test(value));

function applies(policy: PolicyDocument, effect: 'Allow' | 'Deny', request: S3Request): boolean {
  return policy.Statement.some((s) => {
    if (s.Effect !== effect || !matches(s.Action, request.action) || !matches(s.Resource, request.resource)) return false;
    const conditions = Object.entries(s.Condition ?? {});
    return conditions.every(([operator, keys]) => {
      if (operator !== 'StringLike') throw new Error(`iam-policy: condition operator ${operator} is not emulated`);
      return Object.entries(keys).every(([key, values]) => {
        if (key !== 's3:prefix') throw new Error(`iam-policy: condition key ${key} is not emulated`);
        return request.prefix !== undefined && matches(values, request.prefix);
      });
    });
  });
}

const allows = (policy: PolicyDocument, request: S3Request) => applies(policy, 'Allow', request) && !applies(policy, 'Deny', request);

export function isAllowed(principal: Principal, request: S3Request): boolean {
  if (principal.policies.some((p) => applies(p, 'Deny', request))) return false;
  return principal.policies.some((p) => applies(p, 'Allow', request)) && (!principal.boundary || allows(principal.boundary, request));
}

const objectArn = (bucket: string, key: string) => `arn:aws:s3:::${bucket}/${key}`;

/** The IAM requests one S3 API call makes (S3's action mapping for the calls the pipeline uses). */
export function s3Requests(command: string, input: Record<string, unknown>): S3Request[] {
  const bucket = String(input.Bucket);
  const key = String(input.Key);
  const object = objectArn(bucket, key);
  switch (command) {
    case 'GetObjectCommand':
    case 'HeadObjectCommand':
      return [{ action: input.VersionId ? 's3:GetObjectVersion' : 's3:GetObject', resource: object }];
    case 'PutObjectCommand':
    case 'CreateMultipartUploadCommand':
    case 'UploadPartCommand':
    case 'CompleteMultipartUploadCommand':
      return [{ action: 's3:PutObject', resource: object }];
    case 'AbortMultipartUploadCommand':
      return [{ action: 's3:AbortMultipartUpload', resource: object }];
    case 'DeleteObjectCommand':
      return [{ action: input.VersionId ? 's3:DeleteObjectVersion' : 's3:DeleteObject', resource: object }];
    case 'GetObjectTaggingCommand':
      return [{ action: 's3:GetObjectTagging', resource: object }];
    case 'CopyObjectCommand': {
      // CopySource is "<bucket>/<url-encoded key>[?versionId=...]"; copying the tag set reads and writes tags.
      const [path, query] = String(input.CopySource).split('?');
      const source = objectArn(path!.slice(0, path!.indexOf('/')), decodeURIComponent(path!.slice(path!.indexOf('/') + 1)));
      const versioned = query?.startsWith('versionId=');
      return [
        { action: versioned ? 's3:GetObjectVersion' : 's3:GetObject', resource: source },
        { action: 's3:GetObjectTagging', resource: source },
        { action: 's3:PutObject', resource: object },
        { action: 's3:PutObjectTagging', resource: object },
      ];
    }
    case 'ListObjectsV2Command':
      return [{ action: 's3:ListBucket', resource: `arn:aws:s3:::${bucket}`, prefix: typeof input.Prefix === 'string' ? input.Prefix : '' }];
    default:
      throw new Error(`iam-policy: ${command} is not emulated (add its IAM actions here)`);
  }
}

const accessDenied = (principal: Principal, r: S3Request) =>
  Object.assign(
    new Error(`User: ${principal.name} is not authorized to perform: ${r.action} on resource: "${r.resource}"${r.prefix !== undefined ? ` with s3:prefix "${r.prefix}"` : ''} (local IAM emulation)`),
    { name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 } },
  );

const missing = (e: unknown) => ['NoSuchKey', 'NotFound'].includes((e as { name?: string }).name ?? '');

/**
 * Makes `client` send only what the principal `who()` names may (none: unchecked): each call is checked before it
 * leaves, and, as S3 does, a missing key reads as AccessDenied, not NoSuchKey, for a principal that may not list it
 * (s3:ListBucket with the key as prefix).
 */
function check(client: S3Client, who: () => Principal | undefined): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const principal = who();
      if (!principal) return next(args);
      const command = context.commandName ?? '';
      const input = args.input as Record<string, unknown>;
      for (const r of s3Requests(command, input)) if (!isAllowed(principal, r)) throw accessDenied(principal, r);
      try {
        return await next(args);
      } catch (e) {
        if (missing(e) && (command === 'GetObjectCommand' || command === 'HeadObjectCommand')) {
          const list: S3Request = { action: 's3:ListBucket', resource: `arn:aws:s3:::${String(input.Bucket)}`, prefix: String(input.Key) };
          if (!isAllowed(principal, list)) throw accessDenied(principal, s3Requests(command, input)[0]!);
        }
        throw e;
      }
    },
    { step: 'initialize', name: 'localIamEmulation' },
  );
}

/** `client`, sending only what `principal` may. */
export function enforceOn(client: S3Client, principal: Principal): S3Client {
  check(client, () => principal);
  return client;
}

const acting = new AsyncLocalStorage<Principal>();
const actingChecked = new WeakSet<S3Client>();

/** Runs `call` as `principal`: a client given to enforceActing sends only what it may (a Lambda invocation's role). */
export const actingAs = <T>(principal: Principal | undefined, call: () => Promise<T>): Promise<T> => (principal ? acting.run(principal, call) : call());

/** Checks `client`'s calls against the principal each runs as (actingAs); idempotent per client. */
export function enforceActing(client: S3Client): void {
  if (actingChecked.has(client)) return;
  actingChecked.add(client);
  check(client, () => acting.getStore());
}
