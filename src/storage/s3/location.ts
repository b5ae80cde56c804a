/** Where an s3 driver keeps its objects: `s3://BUCKET[/PREFIX]`, as `ferry serve --storage` takes it. */
export interface S3Location {
  bucket: string;
  /** Key prefix, without leading or trailing slash ('' for the bucket's root). */
  prefix: string;
}

/** Bucket names as S3 allows them (3-63 of a-z 0-9 . -, starting and ending with a letter or digit). */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Parses `s3://BUCKET/optional/prefix`. Throws an Error whose message is one line naming what is wrong.
 *
 * @example
 * ```ts
 * parseS3Url('s3://ferry-files/prod'); // { bucket: 'ferry-files', prefix: 'prod' }
 * ```
 */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  if (!m) throw new Error(`Invalid --storage '${url.slice(0, 200)}': use s3://BUCKET or s3://BUCKET/PREFIX`);
  const bucket = m[1] ?? '';
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw new Error(`Invalid bucket name '${bucket.slice(0, 80)}' in --storage: 3 to 63 characters of a-z, 0-9, '.' and '-'`);
  }
  const segments = (m[2] ?? '').split('/').filter((s) => s !== '');
  for (const s of segments) {
    if (s === '.' || s === '..' || /[\u0000-\u001f\u007f\\]/.test(s)) {
      throw new Error(`Invalid prefix in --storage '${url.slice(0, 200)}': no '.', '..', backslash or control characters`);
    }
  }
  return { bucket, prefix: segments.join('/') };
}
