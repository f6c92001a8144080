import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
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

  /**
   * Object access by key prefix. Writers go through ObjectStore.put, which stages under `_tmp/` and copies into
   * place, so every writer also reads, writes and deletes there.
   */
  grantPrefixes(grantee: iam.IGrantable, access: { read?: string[]; write?: string[]; delete?: string[] }): void {
    for (const prefix of access.read ?? []) this.bucket.grantRead(grantee, `${prefix}/*`);
    for (const prefix of access.delete ?? []) this.bucket.grantDelete(grantee, `${prefix}/*`);
    const write = access.write ?? [];
    if (write.length === 0) return;
    for (const prefix of [...write, TMP_SEGMENT]) this.bucket.grantPut(grantee, `${prefix}/*`);
    this.bucket.grantRead(grantee, `${TMP_SEGMENT}/*`);
    this.bucket.grantDelete(grantee, `${TMP_SEGMENT}/*`);
  }
}
