import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct, type IConstruct } from 'constructs';
import { keyAccessGrants, type KeyAccess, type KeyGrant } from '../core/s3-access.ts';
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
   * Least-privilege object access (core/s3-access.ts keyAccessGrants): exact actions on key patterns from
   * core/s3-layout.ts, with `*` for what is chosen at run time (a run id, a dataset name), and s3:ListBucket only
   * for the s3:prefix patterns given.
   */
  grantKeys(grantee: iam.IGrantable & IConstruct, access: GrantedKeys): void {
    for (const grant of keyAccessGrants(this.bucket.bucketArn, access)) {
      grantee.grantPrincipal.addToPrincipalPolicy(iam.PolicyStatement.fromJson(grant.statement));
      this.noteWildcards(grantee, grant, access.why);
    }
  }

  /** Records the grant's patterns with a `*` for cdk/nag.ts, on the construct that holds them. */
  noteWildcards(scope: IConstruct, grant: KeyGrant, why: string): void {
    for (const p of grant.patterns) if (p.includes('*')) this.wildcardGrants.push({ scope, pattern: p, reason: `${grant.does}: ${why}` });
  }
}

/** A KeyAccess with what the role is for, in the cdk-nag acknowledgement of each wildcard pattern. */
export interface GrantedKeys extends KeyAccess {
  why: string;
}

export interface WildcardGrant {
  scope: IConstruct;
  pattern: string;
  reason: string;
}
