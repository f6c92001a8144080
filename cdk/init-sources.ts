/** One of the deployment's extra `init` sources: an s3:// object, or a prefix when it ends in `/`. */
export interface InitSource {
  uri: string;
  bucket: string;
  key: string;
  prefix: boolean;
}

/**
 * The stack's `initSources` (context, comma-separated): s3:// URIs a dataset's train.json `init` may name beyond
 * the built-in ones (core/dataset/validate.ts initProblem). The same list is Validate's rule and the Batch job
 * role's extra read grant, so neither can drift from the other. IAM wildcards are refused: a source is literal.
 */
export function parseInitSource(uri: string): InitSource {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.exec(uri);
  if (!m) throw new Error(`initSources: '${uri}' is not s3://<bucket>/<key or prefix/>`);
  const key = m[2]!;
  if (/[*?]/.test(key)) throw new Error(`initSources: '${uri}' has a wildcard; name an object or a prefix ending in '/'`);
  if (key.split('/').slice(0, -1).some((s) => s === '' || s === '.' || s === '..')) {
    throw new Error(`initSources: '${uri}' has an empty, '.' or '..' path segment`);
  }
  return { uri, bucket: m[1]!, key, prefix: key.endsWith('/') };
}
