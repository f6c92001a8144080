import { S3Client } from '@aws-sdk/client-s3';

/**
 * One S3 client factory for every handler, worker and CLI path. An endpoint override (loopback S3 server,
 * LocalStack) needs path-style addressing: with `http://localhost:PORT` the SDK would otherwise try
 * `<bucket>.localhost`.
 */
export function makeS3Client(): S3Client {
  const endpoint = process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  return new S3Client({ forcePathStyle: Boolean(endpoint), ...(endpoint ? { endpoint } : {}) });
}
