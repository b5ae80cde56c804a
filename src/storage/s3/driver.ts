import { AbortMultipartUploadCommand, DeleteObjectCommand, HeadBucketCommand, ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client, type _Object } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { uploadIdOf } from './checkpoint.ts';
import { NameLocks } from '../local/partials.ts';
import { checkHomeName } from '../checks.ts';
import type { NameLeases, Storage, StorageDriver } from '../storage.ts';
import { isNotFound, isUnavailable, makeS3Client, statusOf, type S3ClientOptions } from './client.ts';
import { FolderCache, S3Home } from './home.ts';
import type { S3Location } from './location.ts';
import { S3Storage } from './storage.ts';

/**
 * Stores each user's files in an S3-compatible object store: `<prefix>/homes/<user>/<path>` in one bucket (see
 * S3Home). Uploads in progress are multipart uploads on their final key, invisible until completed, each described
 * by a checkpoint to resume it (checkpoint.ts); the sweeper aborts those not written to for the partial age (7
 * days by default). Credentials come from the environment or
 * the usual AWS files (the SDK's default chain), never from the command line.
 */
export class S3Driver implements StorageDriver {
  readonly #client: S3Client;
  readonly #location: S3Location;
  readonly #locks = new NameLocks();
  readonly #folders = new FolderCache();
  /**
   * Small files stored and files opened at once, for every user of this server: past the SDK's 50 connections a
   * request only waits, holding its memory (measured: 16 bundles of 256 files in flight took the server to 480 MB).
   */
  readonly #limit = pLimit(64);
  readonly #endpoint: string;

  readonly #leases: NameLeases | null;

  /** `leases`: claims on keys shared with the other servers on this store (one upload per target across them). */
  constructor(location: S3Location, options: S3ClientOptions = {}, leases: NameLeases | null = null) {
    this.#leases = leases;
    this.#location = location;
    this.#client = makeS3Client(options);
    this.#endpoint = options.endpoint ?? 'AWS S3';
  }

  /** `s3://bucket/prefix`, for the start-up lines. */
  get description(): string {
    return `s3://${this.#location.bucket}${this.#location.prefix ? `/${this.#location.prefix}` : ''} at ${this.#endpoint}`;
  }

  /** The prefix every key of this server starts with ('' or `prefix/`). */
  get #base(): string {
    return this.#location.prefix === '' ? '' : `${this.#location.prefix}/`;
  }

  /**
   * Checks at start that the bucket is there and reachable with these credentials. Throws an Error with one line
   * naming the problem (a missing bucket, refused credentials, an unreachable endpoint).
   */
  async check(): Promise<void> {
    const { bucket } = this.#location;
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: bucket }));
    } catch (err) {
      const name = (err as { name?: string } | null)?.name ?? '';
      const status = statusOf(err);
      if (name === 'CredentialsProviderError' || /credential/i.test((err as Error)?.message ?? '') && status === undefined) {
        throw new Error(`No S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials)`);
      }
      if (isNotFound(err)) throw new Error(`Bucket '${bucket}' does not exist at ${this.#endpoint}`);
      if (status === 403 || status === 401) throw new Error(`The object store at ${this.#endpoint} refused these credentials for bucket '${bucket}' (HTTP ${status})`);
      if (status === 301 || status === 400) throw new Error(`The object store at ${this.#endpoint} refused bucket '${bucket}' (HTTP ${status}: check --s3-region)`);
      if (isUnavailable(err) || status === undefined) {
        const code = (err as { code?: string } | null)?.code ?? name;
        throw new Error(`Cannot reach the object store at ${this.#endpoint}${code ? ` (${code})` : ''}`);
      }
      throw new Error(`The object store at ${this.#endpoint} answered HTTP ${status} for bucket '${bucket}'`);
    }
  }

  forUser(user: string): Storage {
    checkHomeName(user);
    return new S3Storage(new S3Home(this.#client, this.#location.bucket, this.#base, user, this.#folders), this.#locks, this.#limit, this.#leases);
  }

  /**
   * Aborts the multipart uploads under this server's homes started more than `maxAgeMs` ago — but those whose
   * checkpoint was written since (an upload resumed lately is alive, as a local partial written lately is) — and
   * deletes checkpoints older than that. Returns how many uploads it aborted.
   */
  async sweepPartials(maxAgeMs: number): Promise<number> {
    const { bucket } = this.#location;
    const before = Date.now() - maxAgeMs;
    const alive = new Set<string>();
    const old: string[] = [];
    for await (const o of this.#objects(`${this.#base}uploads/`)) {
      if (!o.Key) continue;
      if ((o.LastModified?.getTime() ?? 0) >= before) alive.add(uploadIdOf(o.Key));
      else old.push(o.Key);
    }
    let swept = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const out = await this.#client.send(
        new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${this.#base}homes/`, ...(keyMarker ? { KeyMarker: keyMarker } : {}), ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}) }),
      );
      for (const u of out.Uploads ?? []) {
        if (u.Initiated === undefined || u.Initiated.getTime() >= before || !u.Key || !u.UploadId || alive.has(u.UploadId)) continue;
        await this.#client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId })).catch(() => {});
        swept++;
      }
      if (!out.IsTruncated) break;
      keyMarker = out.NextKeyMarker;
      uploadIdMarker = out.NextUploadIdMarker;
    }
    for (const key of old) await this.#client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch(() => {});
    return swept;
  }

  /** Every object under a prefix, page by page. */
  async *#objects(prefix: string): AsyncIterable<_Object> {
    let token: string | undefined;
    do {
      const out = await this.#client.send(new ListObjectsV2Command({ Bucket: this.#location.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
      yield* out.Contents ?? [];
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** Closes the SDK's connections. */
  close(): void {
    this.#client.destroy();
  }
}
