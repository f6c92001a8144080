import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct, type IConstruct } from 'constructs';
import { TMP_SEGMENT } from '../core/store.ts';

export interface DataBucketProps {
  removalPolicy: RemovalPolicy;
  /** Days an overwritten or deleted object version is kept. */
  noncurrentVersionDays: number;
}

/**
 * The one bucket of the pipeline (layout in core/s3-layout.ts): TLS only, private, versioned (an overwritten
 * dataset file can be recovered; runs are named by content, not version), emitting EventBridge events, with
 * server access logs in a second bucket.
 */
export class DataBucket extends Construct {
  readonly bucket: s3.Bucket;
  readonly accessLogs: s3.Bucket;

  constructor(scope: Construct, id: string, props: DataBucketProps) {
    super(scope, id);
    const autoDelete = props.removalPolicy === RemovalPolicy.DESTROY;
    this.accessLogs = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      lifecycleRules: [{ expiration: Duration.days(365) }],
      removalPolicy: props.removalPolicy,
      autoDeleteObjects: autoDelete,
    });
    this.bucket = new s3.Bucket(this, 'Bucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      eventBridgeEnabled: true,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'data/',
      lifecycleRules: [
        // ObjectStore.put stages every object under _tmp/ and deletes it after the copy; a crash leaves it behind.
        { id: 'expire-temporaries', prefix: `${TMP_SEGMENT}/`, expiration: Duration.days(1), noncurrentVersionExpiration: Duration.days(1) },
        { id: 'abort-multipart', abortIncompleteMultipartUploadAfter: Duration.days(1) },
        { id: 'expire-old-versions', noncurrentVersionExpiration: Duration.days(props.noncurrentVersionDays) },
      ],
      removalPolicy: props.removalPolicy,
      autoDeleteObjects: autoDelete,
    });
  }

  /** Every object pattern with a `*` that a grant of this bucket produced, with why, for cdk/nag.ts. */
  readonly wildcardGrants: WildcardGrant[] = [];

  /**
   * Least-privilege object access: exact actions on key patterns, and s3:ListBucket only for the s3:prefix
   * patterns given (never the whole bucket). Patterns come from core/s3-layout.ts with `*` for what is chosen at
   * run time (a run id, a dataset name). Writers go through ObjectStore.put, which stages under `_tmp/<uuid>/`
   * and copies into place, so each writer also puts, reads, aborts and deletes there; no role may list `_tmp/`,
   * so a writer can only reach the temporaries whose random key it made itself.
   */
  grantKeys(grantee: iam.IGrantable & IConstruct, access: KeyAccess): void {
    const objects = (actions: string[], patterns: readonly string[] | undefined, what: string) => {
      if (!patterns?.length) return;
      grantee.grantPrincipal.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions, resources: patterns.map((p) => this.bucket.arnForObjects(p)) }),
      );
      for (const p of patterns) if (p.includes('*')) this.wildcardGrants.push({ scope: grantee, pattern: p, reason: `${what}: ${access.why}` });
    };
    objects(['s3:GetObject'], access.read, 'reads these objects');
    // A run reads the captions.csv version that started it (S3Store pins), which is GetObjectVersion.
    objects(['s3:GetObject', 's3:GetObjectVersion'], access.readVersions, 'reads these objects, at a given version');
    // PutObjectTagging: CopyObject copies the source's (empty) tag set; granted where the role may write anyway.
    objects(['s3:PutObject', 's3:PutObjectTagging'], access.write, 'writes these objects (staged under _tmp/)');
    objects(['s3:PutObject'], access.putDirect, 'writes these objects with conditional PutObject');
    objects(['s3:DeleteObject'], access.delete, 'deletes these objects (a delete marker: the bucket is versioned)');
    if (access.write?.length) {
      objects(['s3:PutObject', 's3:GetObject', 's3:GetObjectTagging', 's3:DeleteObject', 's3:AbortMultipartUpload'], [`${TMP_SEGMENT}/*`], 'stages each write under _tmp/<random uuid>/ (ObjectStore.put), unlistable');
    }
    if (access.list?.length) {
      grantee.grantPrincipal.addToPrincipalPolicy(
        new iam.PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [this.bucket.bucketArn],
          // Also what makes S3 answer 404 rather than 403 for a missing key under these prefixes.
          conditions: { StringLike: { 's3:prefix': [...access.list] } },
        }),
      );
    }
  }
}

/** Key patterns (relative to the bucket, `*` for names chosen at run time) a role may use, by action. */
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
  /** What the role is for, in the cdk-nag acknowledgement of each wildcard pattern. */
  why: string;
}

export interface WildcardGrant {
  scope: IConstruct;
  pattern: string;
  reason: string;
}
