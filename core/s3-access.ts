import { TMP_SEGMENT } from './store.ts';

/** An IAM policy as JSON, in the only form this project writes: Allow statements on S3. */
export interface IamStatement {
  Effect: 'Allow';
  Action: string[];
  Resource: string[];
  Condition?: { StringLike: Record<string, string[]> };
}

export interface IamPolicy {
  Version: '2012-10-17';
  Statement: IamStatement[];
}

export const iamPolicy = (statements: IamStatement[]): IamPolicy => ({ Version: '2012-10-17', Statement: statements });

/**
 * `name` as literal text inside an IAM resource or StringLike pattern: `*`, `?` and `$` are IAM's wildcards and
 * variable marker there, and `${*}`, `${?}`, `${$}` their literal forms. Dataset names and keys may hold any of them.
 */
export const iamLiteral = (name: string): string => name.replace(/[*?$]/g, (c) => `\${${c}}`);

/**
 * Key patterns (relative to the bucket) a role may use, by action: the one description of a role's data access,
 * rendered into a CDK grant (cdk/data-bucket.ts, `*` for names chosen at run time) and into a run's own policy
 * (core/run-access.ts, the run's names as literals).
 */
export interface KeyAccess {
  /** GetObject (and HeadObject, ranged and streamed reads). */
  read?: readonly string[];
  /** GetObject and GetObjectVersion. */
  readVersions?: readonly string[];
  /** PutObject through ObjectStore.put (staged under _tmp/). */
  write?: readonly string[];
  /** PutObject straight to the key (Publish's conditional write of latest.json). */
  putDirect?: readonly string[];
  /** DeleteObject. */
  delete?: readonly string[];
  /** s3:prefix patterns ListObjectsV2 may be asked for. */
  list?: readonly string[];
}

/** One statement of a KeyAccess, with the object patterns it names and what it lets the role do with them. */
export interface KeyGrant {
  statement: IamStatement;
  patterns: readonly string[];
  does: string;
}

/**
 * A KeyAccess as IAM statements on `bucketArn`: exact actions on object patterns, and s3:ListBucket only with an
 * s3:prefix condition (never the whole bucket). Writers go through ObjectStore.put, which stages under
 * `_tmp/<uuid>/` and copies into place, so each writer also puts, reads, aborts and deletes there; no role may
 * list `_tmp/`, so a writer can only reach the temporaries whose random key it made itself.
 */
export function keyAccessGrants(bucketArn: string, access: KeyAccess): KeyGrant[] {
  const grants: KeyGrant[] = [];
  const objects = (actions: string[], patterns: readonly string[] | undefined, does: string) => {
    if (!patterns?.length) return;
    grants.push({ statement: { Effect: 'Allow', Action: actions, Resource: patterns.map((p) => `${bucketArn}/${p}`) }, patterns, does });
  };
  objects(['s3:GetObject'], access.read, 'reads these objects');
  // A run reads the captions.csv version that started it (S3Store pins), which is GetObjectVersion.
  objects(['s3:GetObject', 's3:GetObjectVersion'], access.readVersions, 'reads these objects, at a given version');
  // PutObjectTagging: CopyObject copies the source's (empty) tag set; granted where the role may write anyway.
  objects(['s3:PutObject', 's3:PutObjectTagging'], access.write, 'writes these objects (staged under _tmp/)');
  objects(['s3:PutObject'], access.putDirect, 'writes these objects with conditional PutObject');
  objects(['s3:DeleteObject'], access.delete, 'deletes these objects (a delete marker: the bucket is versioned)');
  if (access.write?.length) {
    objects(
      ['s3:PutObject', 's3:GetObject', 's3:GetObjectTagging', 's3:DeleteObject', 's3:AbortMultipartUpload'],
      [`${TMP_SEGMENT}/*`],
      'stages each write under _tmp/<random uuid>/ (ObjectStore.put), unlistable',
    );
  }
  if (access.list?.length) {
    grants.push({
      // Also what makes S3 answer 404 rather than 403 for a missing key under these prefixes.
      statement: { Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [bucketArn], Condition: { StringLike: { 's3:prefix': [...access.list] } } },
      patterns: [],
      does: 'lists under these prefixes',
    });
  }
  return grants;
}

/** Reading one object (or every object under a prefix, `key` then ending in `*`) of a bucket outside the pipeline's. */
export function objectReadStatements(partition: string, bucket: string, key: string): IamStatement[] {
  return [
    { Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`arn:${partition}:s3:::${bucket}/${key}`] },
    { Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [`arn:${partition}:s3:::${bucket}`], Condition: { StringLike: { 's3:prefix': [key] } } },
  ];
}
