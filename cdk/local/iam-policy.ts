import type { S3Client } from '@aws-sdk/client-s3';
import type { IamPolicy } from '../../core/s3-access.ts';

/**
 * IAM's decision on S3 requests for the principal the local runner trains as (a run's role): allowed when one of
 * its policies allows the action on the resource and its permissions boundary does too, else AccessDenied, as AWS
 * decides for Allow-only policies. Written here because the policy simulators on npm are AGPL-licensed.
 */
export interface Principal {
  name: string;
  policies: readonly IamPolicy[];
  boundary?: IamPolicy;
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

function allows(policy: IamPolicy, request: S3Request): boolean {
  return policy.Statement.some((s) => {
    if (s.Effect !== 'Allow' || !matches(s.Action, request.action) || !matches(s.Resource, request.resource)) return false;
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

export function isAllowed(principal: Principal, request: S3Request): boolean {
  return principal.policies.some((p) => allows(p, request)) && (!principal.boundary || allows(principal.boundary, request));
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
 * Makes `client` send only what `principal` may: each call is checked before it leaves, and, as S3 does, a
 * missing key reads as AccessDenied, not NoSuchKey, for a principal that may not list it (s3:ListBucket with the
 * key as prefix).
 */
export function enforceOn(client: S3Client, principal: Principal): S3Client {
  client.middlewareStack.add(
    (next, context) => async (args) => {
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
  return client;
}
