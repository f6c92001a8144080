import { S3Client } from '@aws-sdk/client-s3';

const endpointOverride = (): string | undefined => process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;

/**
 * One S3 client factory for every handler, worker and CLI path. An endpoint override (loopback S3 server,
 * LocalStack) needs path-style addressing: with `http://localhost:PORT` the SDK would otherwise try
 * `<bucket>.localhost`.
 */
export function makeS3Client(): S3Client {
  const endpoint = endpointOverride();
  return new S3Client({ forcePathStyle: Boolean(endpoint), ...(endpoint ? { endpoint } : {}) });
}

let handlerClient: { endpoint: string | undefined; client: S3Client } | undefined;

/**
 * The client Lambda handlers share across warm invocations, made on first use rather than at import, and made
 * anew when the endpoint changes, so one local process can run the handlers against successive S3 servers.
 */
export function handlerS3Client(): S3Client {
  const endpoint = endpointOverride();
  if (!handlerClient || handlerClient.endpoint !== endpoint) handlerClient = { endpoint, client: makeS3Client() };
  return handlerClient.client;
}
