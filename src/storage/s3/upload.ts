import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { createSHA256 } from 'hash-wasm';
import { createHash, type Hash } from 'node:crypto';
import { joinVirtual } from '../../core/paths.ts';
import { FerryError } from '../../core/errors.ts';
import type { Entry } from '../../core/types.ts';
import { sharedCommits, type BundleLane } from '../local/lanes.ts';
import type { NameHold } from '../local/partials.ts';
import type { Upload } from '../storage.ts';
import { checkpointPrefix, dropCheckpoint, findResumable, writeCheckpoint, type StoredPart } from './checkpoint.ts';
import { isPreconditionFailed, s3Fail } from './client.ts';
import { META_MTIME, META_SHA256, type S3Home } from './home.ts';

/** Bytes per part of a multipart upload (S3's smallest is 5 MiB, except the last). */
export const PART_SIZE = 8 * 1024 * 1024;
/** The smallest part S3 takes (but for the last): an upload cut off keeps the part it was filling if it is this large. */
const MIN_PART = 5 * 1024 * 1024;
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
  readonly parts: CompletedPart[];
  constructor(
    readonly home: S3Home,
    readonly key: string,
    readonly uploadId: string,
    readonly shown: string,
    stored: readonly StoredPart[] = [],
  ) {
    this.parts = stored.map((p) => ({ PartNumber: p.n, ETag: p.etag }));
  }

  /** Stores part `n`; resolves to its ETag. */
  async part(n: number, body: Buffer): Promise<string> {
    const out = await this.home.client.send(new UploadPartCommand({ Bucket: this.home.bucket, Key: this.key, UploadId: this.uploadId, PartNumber: n, Body: body }));
    const etag = out.ETag ?? '';
    this.parts.push({ PartNumber: n, ETag: etag });
    return etag;
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

/** The SHA-256 (hex) that a saved hash state stands for: what the bytes hashed into it give. */
async function digestOf(state: Uint8Array): Promise<string> {
  const h = await createSHA256();
  h.init();
  h.load(state);
  return h.digest('hex');
}

/**
 * The SHA-256 of a multipart upload, kept in a commit worker (storage/local/worker-hash.ts): each part goes there
 * (a copy) as it goes to the store, and comes back as the hash state after it — what a checkpoint keeps, and what
 * the final digest is read from. hash-wasm's SHA-256, whose state can be saved, is several times slower than
 * Node's: off the event loop it costs a core, not the connections' time.
 */
class PartHasher {
  readonly #lane: BundleLane;
  readonly #waiting = new Map<number, { resolve: (state: Uint8Array) => void; reject: (err: Error) => void }>();
  #broken: Error | null = null;

  constructor(state?: Uint8Array) {
    this.#lane = sharedCommits().bundle(
      (reply) => {
        const waiting = this.#waiting.get(reply.seq);
        this.#waiting.delete(reply.seq);
        if (reply.state !== undefined) waiting?.resolve(reply.state);
        else waiting?.reject(new Error(reply.error?.message ?? 'The hash worker gave no state'));
      },
      (err) => {
        this.#broken = err;
        for (const w of this.#waiting.values()) w.reject(err);
        this.#waiting.clear();
      },
    );
    this.#lane.send({ hash: state !== undefined ? { state } : {} });
  }

  /** Hashes part `n` (after every part before it); resolves to the state after it. */
  part(n: number, bytes: Buffer): Promise<Uint8Array> {
    if (this.#broken !== null) return Promise.reject(this.#broken);
    const state = new Promise<Uint8Array>((resolve, reject) => this.#waiting.set(n, { resolve, reject }));
    this.#lane.send({ seq: n, chunks: [bytes] });
    return state;
  }

  close(): void {
    this.#lane.send({ seq: 0, abort: true });
    this.#lane.close();
    this.#waiting.clear();
  }
}

/**
 * An upload into the store. Small files (one part or less) are held in memory and stored whole at commit, with
 * their SHA-256 in metadata (storeWhole); they do not resume. Larger ones stream into a multipart upload — parts
 * of PART_SIZE, a few on their way at once — while a worker hashes them (PartHasher); the object becomes visible only when
 * CompleteMultipartUpload runs, after size and SHA-256 matched (the upload is aborted otherwise: nothing partial
 * is ever visible), and its SHA-256 is then recorded beside it (S3Home.recordSha256).
 *
 * Resume: after each run of parts the store has taken, a checkpoint (checkpoint.ts) names them with the hash state
 * at their end. An upload cut off keeps its multipart upload and checkpoint (the part being filled is stored too
 * when it is large enough); `S3Upload.open` with `resume` finds them — in this server or another — checks the
 * parts against the store, and goes on from their end, hashing on from the saved state.
 */
export class S3Upload implements Upload {
  readonly offset: number;
  readonly prefixSha256: string;
  readonly replaces: Entry | null;
  readonly createsParents: boolean;
  readonly #t: S3Target;
  readonly #size: number;
  readonly #release: NameHold;
  /** The time the object carries (the multipart upload's, when resumed). */
  readonly #mtime: number;
  /** Where this upload's checkpoints go (`<uploads>/<sha256(path)>-<size>.`); null for a file stored whole. */
  readonly #checkpoints: string | null;
  /** A file stored whole: hashed here, with Node's SHA-256. */
  #hash: Hash | null;
  /** A multipart upload: hashed in a worker, part by part. */
  #hasher: PartHasher | null;
  #received = 0;
  #part: Buffer | null = null;
  #partLength = 0;
  #partNumber = 0;
  /** The multipart upload, created with the first part (see `#start`); null while everything fits in one part. */
  #starting: Promise<Multipart> | null = null;
  #inFlight = new Set<Promise<void>>();
  #error: unknown = null;
  #done = false;
  /** The parts the store has taken, in order from the first (what the checkpoint names). */
  #stored: StoredPart[] = [];
  /** Parts taken out of order, waiting for those before them; the hash state at the end of each part sent. */
  #taken = new Map<number, StoredPart>();
  #states = new Map<number, Uint8Array>();
  /** The checkpoint being written, and whether a newer one waits. */
  #writing: Promise<void> | null = null;
  #stale = false;

  private constructor(t: S3Target, size: number, replaces: Entry | null, createsParents: boolean, release: NameHold, resumed: { mpu: Multipart; stored: StoredPart[]; offset: number; mtime: number; prefixSha256: string; state: Uint8Array } | null) {
    this.#t = t;
    this.#size = size;
    this.#hash = size > PART_SIZE ? null : createHash('sha256');
    this.#hasher = size > PART_SIZE ? new PartHasher(resumed?.state) : null;
    this.replaces = replaces;
    this.createsParents = createsParents;
    this.#release = release;
    this.#checkpoints = size > PART_SIZE ? checkpointPrefix(t.home, t.segments, size) : null;
    this.offset = resumed?.offset ?? 0;
    this.prefixSha256 = resumed?.prefixSha256 ?? EMPTY_SHA256;
    this.#received = this.offset;
    this.#mtime = resumed?.mtime ?? t.mtime ?? Date.now();
    if (resumed !== null) {
      this.#starting = Promise.resolve(resumed.mpu);
      this.#stored = resumed.stored;
      this.#partNumber = resumed.stored.length;
      this.#states.set(resumed.stored.length, resumed.state);
    }
  }

  /**
   * Starts an upload of `size` bytes to the target; with `resume`, goes on with the one left off there (same path
   * and size, parts verified against the store) when there is one.
   */
  static async open(t: S3Target, size: number, resume: boolean, replaces: Entry | null, createsParents: boolean, release: NameHold): Promise<S3Upload> {
    const found = resume && size > PART_SIZE ? await findResumable(t.home, checkpointPrefix(t.home, t.segments, size), t.segments, size, t.mtime) : null;
    if (found === null) return new S3Upload(t, size, replaces, createsParents, release, null);
    const { checkpoint: cp, offset } = found;
    const state = Buffer.from(cp.state, 'base64');
    const mpu = new Multipart(t.home, t.home.key(t.segments), cp.uploadId, t.shown, cp.parts);
    return new S3Upload(t, size, replaces, createsParents, release, { mpu, stored: cp.parts, offset, mtime: cp.mtime, prefixSha256: await digestOf(state), state });
  }

  get received(): number {
    return this.#received;
  }

  async restart(): Promise<void> {
    await this.#drop();
    if (this.#hash !== null) this.#hash = createHash('sha256');
    this.#hasher?.close();
    if (this.#hasher !== null) this.#hasher = new PartHasher();
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
      for (let from = 0; from < chunk.length; ) {
        const part = (this.#part ??= Buffer.allocUnsafe(Math.min(PART_SIZE, this.#size - this.#received)));
        const n = Math.min(chunk.length - from, part.length - this.#partLength);
        const piece = chunk.subarray(from, from + n);
        this.#hash?.update(piece);
        piece.copy(part, this.#partLength);
        this.#partLength += n;
        this.#received += n;
        from += n;
        if (this.#partLength === part.length && this.#received < this.#size) await this.#send();
      }
    }
  }

  async commit(sha256: string): Promise<Entry> {
    this.#check();
    const { shown, segments, home } = this.#t;
    try {
      if (this.#received !== this.#size) {
        throw new FerryError('size_mismatch', `Upload of ${shown} received ${this.#received} bytes of ${this.#size} declared`);
      }
      const mismatch = new FerryError('digest_mismatch', `Upload of ${shown}: the SHA-256 of the bytes received differs from the declared one`);
      if (this.#hash !== null) {
        const digest = this.#hash.digest('hex');
        if (digest !== sha256.toLowerCase()) throw mismatch;
        const body = (this.#part ?? Buffer.alloc(0)).subarray(0, this.#partLength);
        this.#part = null;
        const entry = await storeWhole(this.#t, body, digest);
        this.#done = true;
        return entry;
      }
      if (this.#partLength > 0) await this.#send(); // the last part
      await Promise.all(this.#inFlight);
      this.#check();
      const digest = await digestOf(this.#states.get(this.#partNumber) as Uint8Array);
      if (digest !== sha256.toLowerCase()) throw mismatch;
      if (this.#t.parents) await home.parents(segments, true, 'upload', shown);
      const mpu = await (this.#starting as Promise<Multipart>);
      await mpu.complete(this.#t.overwrite);
      this.#done = true;
      await home.recordSha256(segments, digest);
      await this.#writing;
      await dropCheckpoint(home, `${this.#checkpoints}${mpu.uploadId}`, null);
      return { name: segments.at(-1) as string, type: 'file', size: this.#size, mtime: Math.floor(this.#mtime) };
    } catch (err) {
      if (!this.#done) await this.#drop();
      throw s3Fail(err, 'upload', shown);
    } finally {
      this.#hasher?.close();
      this.#release();
    }
  }

  /**
   * Stops. keepPartial (the connection was lost): a multipart upload stays, with its checkpoint, for a later resume —
   * the part being filled is stored first when it is large enough to be a part; a file stored whole keeps nothing.
   */
  async abort(keepPartial: boolean): Promise<void> {
    this.#release.ending(); // a new upload of the target waits for this one to let go (NameLocks.takeWhenFree)
    try {
      if (keepPartial && this.#checkpoints !== null && !this.#done) {
        await Promise.all(this.#inFlight);
        if (this.#error === null && (this.#partLength >= MIN_PART || (this.#partLength > 0 && this.#received === this.#size))) {
          await this.#send().catch(() => {});
          await Promise.all(this.#inFlight);
        }
        await this.#writing;
        this.#part = null;
        return;
      }
      await this.#drop();
    } finally {
      this.#hasher?.close();
      this.#release();
    }
  }

  /** Sends the part being filled; waits while PARTS_IN_FLIGHT are on their way. */
  async #send(): Promise<void> {
    const body = (this.#part as Buffer).subarray(0, this.#partLength);
    this.#part = null;
    this.#partLength = 0;
    const n = ++this.#partNumber;
    const hashed = (this.#hasher as PartHasher).part(n, body);
    hashed.catch(() => {}); // (its failure is met below)
    const task = (async () => {
      const [etag, state] = await Promise.all([(async () => (await this.#start()).part(n, body))(), hashed]);
      this.#states.set(n, state);
      this.#taken.set(n, { n, etag, size: body.length });
      this.#advance();
    })().catch((err: unknown) => {
      this.#error ??= err;
    });
    this.#inFlight.add(task);
    void task.finally(() => this.#inFlight.delete(task));
    if (this.#inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(this.#inFlight);
    this.#check();
  }

  /** Moves the parts taken in order into `#stored`, and has the checkpoint rewritten when that moved. */
  #advance(): void {
    const before = this.#stored.length;
    for (let next = this.#taken.get(before + 1); next !== undefined; next = this.#taken.get(this.#stored.length + 1)) {
      this.#taken.delete(next.n);
      this.#stored.push(next);
    }
    if (this.#stored.length === before || this.#checkpoints === null) return;
    for (const n of this.#states.keys()) if (n < this.#stored.length) this.#states.delete(n);
    if (this.#writing !== null) {
      this.#stale = true;
      return;
    }
    this.#writing = (async () => {
      do {
        this.#stale = false;
        await this.#checkpoint().catch(() => {}); // a checkpoint not written only shortens a later resume
      } while (this.#stale && !this.#done);
      this.#writing = null;
    })();
  }

  async #checkpoint(): Promise<void> {
    const mpu = await (this.#starting as Promise<Multipart>);
    const parts = [...this.#stored];
    const state = this.#states.get(parts.length);
    if (state === undefined || this.#done) return;
    const { home, segments } = this.#t;
    await writeCheckpoint(home, this.#checkpoints as string, {
      v: 1,
      path: joinVirtual(segments),
      size: this.#size,
      uploadId: mpu.uploadId,
      mtime: this.#mtime,
      parts,
      state: Buffer.from(state).toString('base64'),
    });
  }

  /** Creates the multipart upload (once; parts sent together wait for the same one), dropping any left off before. */
  #start(): Promise<Multipart> {
    this.#starting ??= (async () => {
      const { home, segments } = this.#t;
      const key = home.key(segments);
      const [{ UploadId }] = await Promise.all([
        home.client.send(new CreateMultipartUploadCommand({ Bucket: home.bucket, Key: key, Metadata: { [META_MTIME]: String(this.#mtime) } })),
        this.#dropLeftOff(),
      ]);
      return new Multipart(home, key, UploadId as string, this.#t.shown);
    })();
    return this.#starting;
  }

  /** An upload of this path and size that was not resumed: its parts and checkpoint go (as a local partial is emptied). */
  async #dropLeftOff(): Promise<void> {
    if (this.#checkpoints === null) return;
    const { home } = this.#t;
    const out = await home.client.send(new ListObjectsV2Command({ Bucket: home.bucket, Prefix: this.#checkpoints, MaxKeys: 100 })).catch(() => null);
    for (const o of out?.Contents ?? []) if (o.Key) await dropCheckpoint(home, o.Key, home.key(this.#t.segments));
  }

  #check(): void {
    if (this.#done) throw new FerryError('internal', `Upload of ${this.#t.shown} is over`);
    if (this.#error !== null) throw s3Fail(this.#error, 'upload', this.#t.shown);
  }

  /** Aborts the multipart upload and deletes its checkpoint: nothing of this upload is kept. */
  async #drop(): Promise<void> {
    await Promise.all(this.#inFlight);
    await this.#writing;
    const starting = this.#starting;
    this.#starting = null;
    this.#part = null;
    this.#partLength = 0;
    this.#partNumber = 0;
    this.#error = null;
    this.#stored = [];
    this.#taken.clear();
    this.#states.clear();
    const mpu = await starting?.catch(() => null);
    if (mpu) {
      await mpu.abort();
      if (this.#checkpoints !== null) await dropCheckpoint(this.#t.home, `${this.#checkpoints}${mpu.uploadId}`, null);
    }
  }
}
