import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { FerryError } from '../../core/errors.ts';
import { checkRead } from '../checks.ts';
import type { ReadHandle } from '../storage.ts';
import { isPreconditionFailed, s3Fail } from './client.ts';
import type { FileObject, S3Home } from './home.ts';

/**
 * A file in the store opened for reading: the GET that opened it (from the first byte), or a ranged GET from the
 * first position asked for to the end, read on as the caller goes (a download reads in order), another only when
 * the caller jumps. Every GET is
 * conditional on the ETag seen at open (If-Match): an object replaced meanwhile fails the read rather than
 * mixing two versions.
 */
export class S3ReadHandle implements ReadHandle {
  readonly size: number;
  readonly mtime: number;
  readonly #home: S3Home;
  readonly #key: string;
  readonly #file: FileObject;
  readonly #shown: string;
  #body: AsyncIterator<Buffer> | null = null;
  #stream: Readable | null = null;
  /** Where the open body stands, and bytes it gave that the caller has not taken yet. */
  #at = 0;
  #left: Buffer | null = null;

  /** `body`: the object from its first byte, already asked for (a GET whose headers gave `file`). */
  constructor(home: S3Home, key: string, file: FileObject, shown: string, body?: Readable) {
    this.#home = home;
    this.#key = key;
    this.#file = file;
    this.#shown = shown;
    this.size = file.size;
    this.mtime = file.mtime;
    if (body !== undefined) {
      this.#stream = body;
      this.#body = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      this.#at = 0;
    }
  }

  async read(position: number, length: number): Promise<Buffer> {
    checkRead(position, length);
    const target = Buffer.allocUnsafe(Math.max(0, Math.min(length, this.size - position)));
    const n = await this.readInto(target, position);
    return target.subarray(0, n);
  }

  async readInto(target: Buffer, position: number): Promise<number> {
    checkRead(position);
    if (position >= this.size || target.length === 0) return 0;
    if (this.#body === null || position !== this.#at) await this.#open(position);
    let n = 0;
    const want = Math.min(target.length, this.size - position);
    while (n < want) {
      let chunk = this.#left;
      this.#left = null;
      if (chunk === null) {
        let next: IteratorResult<Buffer>;
        try {
          next = await (this.#body as AsyncIterator<Buffer>).next();
        } catch (err) {
          this.#drop();
          throw s3Fail(err, 'read', this.#shown);
        }
        if (next.done) break;
        chunk = next.value;
      }
      const take = Math.min(chunk.length, want - n);
      chunk.copy(target, n, 0, take);
      n += take;
      if (take < chunk.length) this.#left = chunk.subarray(take);
    }
    this.#at = position + n;
    if (n < want) {
      this.#drop();
      throw new FerryError('internal', `Cannot read ${this.#shown}: the object store sent ${n} bytes where ${want} were due`);
    }
    return n;
  }

  async close(): Promise<void> {
    this.#drop();
  }

  async #open(position: number): Promise<void> {
    this.#drop();
    try {
      const out = await this.#home.client.send(
        new GetObjectCommand({ Bucket: this.#home.bucket, Key: this.#key, Range: `bytes=${position}-${this.size - 1}`, ...(this.#file.etag ? { IfMatch: this.#file.etag } : {}) }),
      );
      const stream = out.Body as Readable | undefined;
      if (!stream) throw new FerryError('internal', `Cannot read ${this.#shown}: the object store sent no body`);
      this.#stream = stream;
      this.#body = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      this.#at = position;
    } catch (err) {
      if (isPreconditionFailed(err)) throw new FerryError('busy', `Cannot read ${this.#shown}: it was replaced while being read; try again`);
      throw s3Fail(err, 'read', this.#shown);
    }
  }

  #drop(): void {
    this.#stream?.destroy();
    this.#stream = null;
    this.#body = null;
    this.#left = null;
  }
}
