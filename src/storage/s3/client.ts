import { createHash } from 'node:crypto';
import { S3Client, S3ServiceException, type ServiceInputTypes, type ServiceOutputTypes } from '@aws-sdk/client-s3';
import type { FinalizeRequestMiddleware } from '@smithy/types';
import { FerryError } from '../../core/errors.ts';

export interface S3ClientOptions {
  /** An S3-compatible endpoint (`https://s3.example.org`); absent: AWS itself. Path-style addressing when set. */
  endpoint?: string;
  /** Region; absent: AWS_REGION from the environment, else us-east-1. */
  region?: string;
}

/**
 * An SDK client set for every S3-compatible store, not only AWS: checksums only where an operation requires one
 * (stores such as Swift refuse the SDK's default aws-chunked uploads), path-style addressing for a custom
 * endpoint, `Content-MD5` on DeleteObjects (required by Swift and older stores; the SDK sends only a CRC), and
 * bounded waits. Credentials come from the SDK's default chain: the environment, then ~/.aws.
 */
export function makeS3Client(options: S3ClientOptions): S3Client {
  // The SDK is pinned to a release that supports Node 20 (package.json); its notice that later releases will not
  // would be printed into ferry's console and a client's stderr.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const client = new S3Client({
    region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 120_000 },
  });
  const contentMd5: FinalizeRequestMiddleware<ServiceInputTypes, ServiceOutputTypes> = (next, context) => async (args) => {
    const request = args.request as { body?: unknown; headers?: Record<string, string> } | undefined;
    if (context.commandName === 'DeleteObjectsCommand' && request?.headers && (typeof request.body === 'string' || request.body instanceof Uint8Array)) {
      request.headers['content-md5'] ??= createHash('md5').update(request.body).digest('base64');
    }
    return next(args);
  };
  client.middlewareStack.addRelativeTo(contentMd5, { relation: 'before', toMiddleware: 'httpSigningMiddleware', name: 'ferryContentMd5' });
  return client;
}

/** The HTTP status of an SDK error, if the store answered. */
export function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

/** Whether the store said the object (or upload) is not there. */
export function isNotFound(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return statusOf(err) === 404 || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload';
}

/** Whether a condition (If-None-Match, If-Match) failed. */
export function isPreconditionFailed(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return statusOf(err) === 412 || name === 'PreconditionFailed';
}

const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);

/** Whether the store could not be reached or is failing (a retry later may work). */
export function isUnavailable(err: unknown): boolean {
  const e = err as { name?: string; code?: string; $retryable?: unknown } | null;
  const status = statusOf(err);
  if (status !== undefined && status >= 500) return true;
  if (e?.name === 'TimeoutError' || e?.name === 'RequestTimeout' || e?.name === 'SlowDown' || e?.name === 'ServiceUnavailable') return true;
  return e?.code !== undefined && NETWORK.has(e.code);
}

/**
 * An SDK error in the protocol's words, naming the virtual path only (never a bucket or key): the store
 * unreachable or failing is `unavailable` (retryable); anything unexpected is `internal`. FerryErrors pass through.
 */
export function s3Fail(err: unknown, verb: string, shown: string): FerryError {
  if (err instanceof FerryError) return err;
  const cannot = `Cannot ${verb} ${shown}`;
  if (isNotFound(err)) return new FerryError('not_found', `${cannot}: no such file or directory`);
  if (isPreconditionFailed(err)) return new FerryError('exists', `${cannot}: it exists`);
  if (isUnavailable(err)) return new FerryError('unavailable', `${cannot}: the object store is unavailable; try again`);
  const status = statusOf(err);
  if (status === 403) return new FerryError('internal', `${cannot}: the server lacks permission on its object store`);
  const what = err instanceof S3ServiceException ? `${err.name}${status ? ` (HTTP ${status})` : ''}` : (err as { code?: string } | null)?.code ?? 'unexpected error';
  return new FerryError('internal', `${cannot}: the object store answered ${what}`);
}
