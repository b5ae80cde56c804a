import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { createHash, type Hash } from 'node:crypto';
import { FerryError } from '../../core/errors.ts';
import type { Entry } from '../../core/types.ts';
import type { Upload } from '../storage.ts';
import { isPreconditionFailed, s3Fail } from './client.ts';
import { META_MTIME, META_SHA256, type S3Home } from './home.ts';

/** Bytes per part of a multipart upload (S3's smallest is 5 MiB, except the last). */
export const PART_SIZE = 8 * 1024 * 1024;
/** Parts of one upload on their way to the store at once. */
const PARTS_IN_FLIGHT = 4;
const EMPTY_SHA256 = createHash('sha256').digest('hex');

export interface S3Target {
  home: S3Home;
  segments: string[];
  shown: string;
  overwrite: boolean;
  /** Missing folders above the target are made at commit (an upload with `parents`). */
  parents: boolean;
  mtime?: number;
}

/**
 * Stores a whole file whose bytes (and SHA-256) are known, carrying its SHA-256 and time in metadata. Without
 * overwrite the object is created only if nothing has that key, by a conditional complete of a one-part
 * multipart upload (`If-None-Match: *`: stores such as Swift do not take the condition on a plain PUT); with
 * overwrite, one PUT.
 */
export async function storeWhole(t: S3Target, body: Buffer, sha256: string): Promise<Entry> {
  const { home, segments, shown } = t;
  const mtime = t.mtime ?? Date.now();
  const Metadata = { [META_MTIME]: String(mtime), [META_SHA256]: sha256 };
  const Key = home.key(segments);
  if (t.parents) await home.parents(segments, true, 'upload', shown);
  try {
    if (t.overwrite) {
      await home.client.send(new PutObjectCommand({ Bucket: home.bucket, Key, Body: body, Metadata }));
    } else {
      const { UploadId } = await home.client.send(new CreateMultipartUploadCommand({ Bucket: home.bucket, Key, Metadata }));
      const mpu = new Multipart(home, Key, UploadId as string, shown);
      await mpu.part(1, body);
      await mpu.complete(false);
    }
  } catch (err) {
    throw s3Fail(err, 'upload', shown);
  }
  return { name: segments.at(-1) as string, type: 'file', size: body.length, mtime: Math.floor(mtime) };
}

/** One multipart upload: its parts, and how it ends (completed, or aborted). */
class Multipart {
  readonly parts: CompletedPart[] = [];
  constructor(
    readonly home: S3Home,
    readonly key: string,
    readonly uploadId: string,
    readonly shown: string,
  ) {}

  async part(n: number, body: Buffer): Promise<void> {
    const out = await this.home.client.send(new UploadPartCommand({ Bucket: this.home.bucket, Key: this.key, UploadId: this.uploadId, PartNumber: n, Body: body }));
    this.parts.push({ PartNumber: n, ETag: out.ETag });
  }

  /** Makes the object visible; without `overwrite` only if nothing has its key (`exists` otherwise, and aborted). */
  async complete(overwrite: boolean): Promise<void> {
    const Parts = [...this.parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    try {
      await this.home.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.home.bucket, Key: this.key, UploadId: this.uploadId, MultipartUpload: { Parts }, ...(overwrite ? {} : { IfNoneMatch: '*' }) }),
      );
    } catch (err) {
      await this.abort();
      if (isPreconditionFailed(err)) throw new FerryError('exists', `Cannot upload ${this.shown}: it exists`);
      throw err;
    }
  }

  async abort(): Promise<void> {
    await this.home.client.send(new AbortMultipartUploadCommand({ Bucket: this.home.bucket, Key: this.key, UploadId: this.uploadId })).catch(() => {});
  }
}

/**
 * An upload into the store. Small files (one part or less) are held in memory and stored whole at commit, with
 * their SHA-256 in metadata (storeWhole). Larger ones stream into a multipart upload — parts of PART_SIZE, a few
 * on their way at once — while the server hashes them; the object becomes visible only when CompleteMultipartUpload
 * runs, after size and SHA-256 matched (the upload is aborted otherwise: nothing partial is ever visible).
 * Not resumable yet: an interrupted upload is aborted and starts again from 0.
 */
export class S3Upload implements Upload {
  readonly offset = 0;
  readonly prefixSha256 = EMPTY_SHA256;
  readonly replaces: Entry | null;
  readonly createsParents: boolean;
  readonly #t: S3Target;
  readonly #size: number;
  readonly #release: () => void;
  #hash: Hash = createHash('sha256');
  #received = 0;
  #part: Buffer | null = null;
  #partLength = 0;
  #partNumber = 0;
  /** The multipart upload, created with the first part (see `#start`); null while everything fits in one part. */
  #starting: Promise<Multipart> | null = null;
  #inFlight = new Set<Promise<void>>();
  #error: unknown = null;
  #done = false;

  constructor(t: S3Target, size: number, replaces: Entry | null, createsParents: boolean, release: () => void) {
    this.#t = t;
    this.#size = size;
    this.replaces = replaces;
    this.createsParents = createsParents;
    this.#release = release;
  }

  get received(): number {
    return this.#received;
  }

  async restart(): Promise<void> {
    await this.#drop();
    this.#hash = createHash('sha256');
    this.#received = 0;
  }

  async write(chunks: readonly Buffer[]): Promise<void> {
    this.#check();
    let total = 0;
    for (const c of chunks) total += c.length;
    if (this.#received + total > this.#size) {
      throw new FerryError('size_mismatch', `Upload of ${this.#t.shown} passes its declared size of ${this.#size} bytes`);
    }
    for (const chunk of chunks) {
      this.#hash.update(chunk);
      for (let from = 0; from < chunk.length; ) {
        const part = (this.#part ??= Buffer.allocUnsafe(Math.min(PART_SIZE, this.#size)));
        const n = Math.min(chunk.length - from, part.length - this.#partLength);
        chunk.copy(part, this.#partLength, from, from + n);
        this.#partLength += n;
        from += n;
        if (this.#partLength === part.length && this.#received + from < this.#size) await this.#send();
      }
      this.#received += chunk.length;
    }
  }

  async commit(sha256: string): Promise<Entry> {
    this.#check();
    const { shown } = this.#t;
    try {
      if (this.#received !== this.#size) {
        throw new FerryError('size_mismatch', `Upload of ${shown} received ${this.#received} bytes of ${this.#size} declared`);
      }
      const digest = this.#hash.digest('hex');
      if (digest !== sha256.toLowerCase()) throw new FerryError('digest_mismatch', `Upload of ${shown}: the SHA-256 of the bytes received differs from the declared one`);
      if (this.#partNumber === 0) {
        const body = (this.#part ?? Buffer.alloc(0)).subarray(0, this.#partLength);
        this.#part = null;
        const entry = await storeWhole(this.#t, body, digest);
        this.#done = true;
        return entry;
      }
      if (this.#partLength > 0) await this.#send();
      await Promise.all(this.#inFlight);
      this.#check();
      if (this.#t.parents) await this.#t.home.parents(this.#t.segments, true, 'upload', shown);
      await (await (this.#starting as Promise<Multipart>)).complete(this.#t.overwrite);
      this.#done = true;
      return { name: this.#t.segments.at(-1) as string, type: 'file', size: this.#size, mtime: Math.floor(this.#t.mtime ?? Date.now()) };
    } catch (err) {
      await this.#drop();
      throw s3Fail(err, 'upload', shown);
    } finally {
      this.#release();
    }
  }

  async abort(_keepPartial: boolean): Promise<void> {
    // Not resumable yet: the parts stored so far go (the sweeper aborts what a crash leaves).
    await this.#drop();
    this.#release();
  }

  /** Sends the part being filled; waits while PARTS_IN_FLIGHT are on their way. */
  async #send(): Promise<void> {
    const body = (this.#part as Buffer).subarray(0, this.#partLength);
    this.#part = null;
    this.#partLength = 0;
    const n = ++this.#partNumber;
    const task = (async () => {
      await (await this.#start()).part(n, body);
    })().catch((err: unknown) => {
      this.#error ??= err;
    });
    this.#inFlight.add(task);
    void task.finally(() => this.#inFlight.delete(task));
    if (this.#inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(this.#inFlight);
    this.#check();
  }

  /** Creates the multipart upload (once; parts sent together wait for the same one). */
  #start(): Promise<Multipart> {
    this.#starting ??= (async () => {
      const { home, segments } = this.#t;
      const key = home.key(segments);
      const { UploadId } = await home.client.send(
        new CreateMultipartUploadCommand({ Bucket: home.bucket, Key: key, Metadata: { [META_MTIME]: String(this.#t.mtime ?? Date.now()) } }),
      );
      return new Multipart(home, key, UploadId as string, this.#t.shown);
    })();
    return this.#starting;
  }

  #check(): void {
    if (this.#done) throw new FerryError('internal', `Upload of ${this.#t.shown} is over`);
    if (this.#error !== null) throw s3Fail(this.#error, 'upload', this.#t.shown);
  }

  async #drop(): Promise<void> {
    await Promise.all(this.#inFlight);
    const starting = this.#starting;
    this.#starting = null;
    this.#part = null;
    this.#partLength = 0;
    this.#partNumber = 0;
    this.#error = null;
    const mpu = await starting?.catch(() => null);
    await mpu?.abort();
  }
}
