import { checkMtime, checkSize } from '../checks.ts';
import { Buffer } from 'node:buffer';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createHash, type Hash } from 'node:crypto';
import { join } from 'node:path';
import type { Entry } from '../../core/types.ts';
import { FerryError } from '../../core/errors.ts';
import { utimeSeconds } from '../../fs/time.ts';
import { writevFully } from '../../fs/write.ts';
import type { Upload, UploadOptions, WholeOptions } from '../storage.ts';
import { commitSmall, digestMismatch, placeUpload, type SmallOutcome } from './commit.ts';
import { O_NOFOLLOW, PARTIAL_FLAGS } from './confine.ts';
import { errno, fail, missingDirectory } from './errors.ts';
import { lstatOrNull, type Home } from './home.ts';
import type { SmallCommits } from './lanes.ts';
import { entryOf } from './listing.ts';
import { unlinkQuietly, type Partials, type Reservation } from './partials.ts';

const EMPTY_SHA256 = createHash('sha256').digest('hex');
const HASH_BUFFER = 1 << 20;
/**
 * Uploads of at least this size (and every resumable one) write their sidecar as they start; smaller ones
 * only when they stop and keep their partial, which saves four file-system calls per small file.
 */
const SIDECAR_MIN_SIZE = 1 << 20;
/**
 * Uploads up to this size (not resumable, into an existing directory, in pinned mode) are held in memory until
 * `commit`, which writes and places them in one hop to a worker thread (lanes.ts, worker.ts).
 */
export const SMALL_COMMIT_MAX = 64 * 1024;

/** What an upload needs of the storage it belongs to. */
export interface UploadContext {
  home: Home;
  partials: Partials;
  /** The commit worker; null: every upload goes through the thread pool. */
  commits: SmallCommits | null;
}

/** Whether an upload is held in memory and committed in one hop to a worker (see SMALL_COMMIT_MAX). */
function heldInMemory(ctx: UploadContext, options: UploadOptions): boolean {
  return ctx.home.pinned && ctx.commits !== null && options.resume !== true && options.size <= SMALL_COMMIT_MAX;
}

/**
 * Starts an upload of `segments` (see `Storage.createUpload`). Checks the target as it starts, to refuse early
 * (commit checks again, in the opened directory, at the moment of placing) — unless `deferChecks` allows a small
 * upload to leave every check to its commit.
 */
export async function createUpload(ctx: UploadContext, segments: readonly string[], shown: string, options: UploadOptions): Promise<Upload> {
  const { size } = options;
  checkSize(size);
  checkMtime(options.mtime);
  const name = segments.at(-1);
  if (name === undefined) throw new FerryError('is_a_directory', 'Cannot upload to your home: it is a directory');
  const home = await ctx.home.real();
  if (options.deferChecks === true && heldInMemory(ctx, options)) return deferredUpload(ctx, segments, shown, home, options);
  const parents = segments.slice(0, -1);
  const { dir, missing } = await ctx.home.existingAncestor(parents, 'upload', shown);
  if (missing.length > 0 && options.parents !== true) throw missingDirectory(parents, missing, shown);
  const target = join(dir, ...missing, name);
  const existing = missing.length === 0 ? await ctx.home.checkTarget(target, options.overwrite === true, 'upload', shown) : null;
  const replaces = existing === null ? null : entryOf(name, existing);

  const reservation = await ctx.partials.reserve(target, segments, size, shown);
  const { partial, sidecar } = reservation;
  // Small: nothing touches the disk until commit, which does it all in one hop (see SMALL_COMMIT_MAX).
  const small = heldInMemory(ctx, options) && missing.length === 0;
  let handle: FileHandle | undefined;
  try {
    await ctx.partials.ensure();
    const hash = createHash('sha256');
    let offset = 0;
    if (options.resume === true) {
      handle = await openIfPresent(partial, constants.O_RDWR | O_NOFOLLOW);
      if (handle !== undefined) {
        const info = await handle.stat();
        if (!info.isFile()) {
          await handle.close();
          handle = undefined;
        } else {
          if (info.size > size) await handle.truncate(size);
          offset = Math.min(info.size, size);
          await hashPrefix(handle, offset, hash);
        }
      }
    }
    if (small) {
      offset = 0;
    } else if (handle === undefined) {
      offset = 0;
      handle = await open(partial, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | O_NOFOLLOW, 0o600);
    } else {
      const now = new Date();
      await handle.utimes(now, now); // a resumed partial starts a new life for the sweeper
    }
    let sidecarWritten = false;
    if (size >= SIDECAR_MIN_SIZE || options.resume === true) {
      if (offset === 0 || (await lstatOrNull(sidecar)) === null) await reservation.writeSidecar();
      sidecarWritten = true;
    }
    return new LocalUpload(ctx, {
      segments,
      shown,
      options,
      reservation,
      sidecarWritten,
      replaces,
      createsParents: missing.length > 0,
      handle,
      hash,
      offset,
      prefix: offset === 0 ? EMPTY_SHA256 : hash.copy().digest('hex'),
      small: small ? 'checked' : null,
    });
  } catch (err) {
    await handle?.close().catch(() => {});
    reservation.release();
    throw fail(err, 'upload', shown);
  }
}

/**
 * A whole file in one step (`Storage.putWhole`): in pinned mode one hop to the commit worker, which checks the
 * digest, writes, checks the target and places it (the checks of a deferred upload); elsewhere the usual
 * upload. The lock on the path and the partial's name are an upload's, so a `put` of the same path meanwhile is
 * `busy` either way. A refused file leaves nothing behind.
 */
export async function putWhole(ctx: UploadContext, segments: readonly string[], shown: string, bytes: Buffer, whole: WholeOptions): Promise<Entry> {
  const { sha256, ...rest } = whole;
  const size = bytes.length; // `bytes` is handed to the worker below, and reads as empty afterwards
  const options: UploadOptions = { ...rest, size, deferChecks: true };
  const name = segments.at(-1);
  if (name === undefined) throw new FerryError('is_a_directory', 'Cannot upload to your home: it is a directory');
  checkMtime(options.mtime);
  const commits = ctx.commits;
  if (!ctx.home.pinned || commits === null) {
    const upload = await createUpload(ctx, segments, shown, options);
    try {
      await upload.write([bytes]);
      return await upload.commit(sha256);
    } catch (err) {
      await upload.abort(false).catch(() => {});
      throw err;
    }
  }
  const home = await ctx.home.real();
  const reservation = await ctx.partials.reserve(join(home, ...segments), segments, size, shown);
  try {
    await ctx.partials.ensure();
    const done = await commitSmall(ctx.home, commits, { segments, shown, partial: reservation.partial, options, bytes, deferred: true, sha256 });
    if ('error' in done) {
      await unlinkQuietly(reservation.partial); // whatever the worker wrote: a refused file leaves nothing
      throw done.error;
    }
    return { name, type: 'file', size, mtime: Math.floor(done.mtimeMs) };
  } catch (err) {
    throw fail(err, 'upload', shown);
  } finally {
    reservation.release();
  }
}

/**
 * A small upload whose checks wait for its commit (`deferChecks`): no file-system call now. The worker checks
 * the target as it places the file (exists, directory, confinement); a missing directory sends the commit the
 * usual way, which says what is missing, or creates it. The lock is on the path as named (the usual way locks
 * the resolved path: the two differ only through a symlinked directory in the home).
 */
async function deferredUpload(ctx: UploadContext, segments: readonly string[], shown: string, home: string, options: UploadOptions): Promise<Upload> {
  const reservation = await ctx.partials.reserve(join(home, ...segments), segments, options.size, shown);
  try {
    await ctx.partials.ensure();
  } catch (err) {
    reservation.release();
    throw fail(err, 'upload', shown);
  }
  return new LocalUpload(ctx, {
    segments,
    shown,
    options,
    reservation,
    sidecarWritten: false,
    replaces: null,
    createsParents: false,
    handle: undefined,
    hash: createHash('sha256'),
    offset: 0,
    prefix: EMPTY_SHA256,
    small: 'deferred',
  });
}

interface UploadState {
  segments: readonly string[];
  shown: string;
  options: UploadOptions;
  reservation: Reservation;
  sidecarWritten: boolean;
  replaces: Entry | null;
  createsParents: boolean;
  /** The open partial; undefined for a small upload held in memory until commit. */
  handle: FileHandle | undefined;
  hash: Hash;
  offset: number;
  prefix: string;
  /** Held in memory and committed in one hop: its target checked as it started, or not at all (deferred). */
  small: 'checked' | 'deferred' | null;
}

/**
 * One upload in progress. Calls are serialised: a `write` issued before the previous one settled waits for
 * it. A `write` that would pass the declared size throws `size_mismatch` and writes nothing; the upload stays
 * open (the caller decides to abort). If `commit` fails after the bytes were verified (the target appeared
 * meanwhile, its directory went away, ...), the partial is kept so that a later upload with `resume` can commit
 * it without sending the bytes again; the sweeper removes it otherwise.
 */
class LocalUpload implements Upload {
  readonly #ctx: UploadContext;
  readonly #s: UploadState;
  #handle: FileHandle | undefined;
  #hash: Hash;
  #offset: number;
  #prefix: string;
  #received: number;
  #finished = false;
  #queue: Promise<unknown> = Promise.resolve();
  /**
   * A small upload's bytes, held until commit in one buffer of its declared size, its own memory (not a slice
   * of Node's pool): the commit hands it to the worker by transfer, without a copy. Null when written as they come.
   */
  #held: Buffer | null;

  constructor(ctx: UploadContext, state: UploadState) {
    this.#ctx = ctx;
    this.#s = state;
    this.#handle = state.handle;
    this.#held = state.small !== null ? Buffer.allocUnsafeSlow(state.options.size) : null;
    this.#hash = state.hash;
    this.#offset = state.offset;
    this.#prefix = state.prefix;
    this.#received = state.offset;
  }

  get offset(): number {
    return this.#offset;
  }
  get replaces(): Entry | null {
    return this.#s.replaces;
  }
  get createsParents(): boolean {
    return this.#s.createsParents;
  }
  get prefixSha256(): string {
    return this.#prefix;
  }
  get received(): number {
    return this.#received;
  }

  restart(): Promise<void> {
    return this.#serial(async () => {
      const handle = this.#open('restart');
      try {
        if (handle !== null) await handle.truncate(0);
      } catch (err) {
        throw fail(err, 'upload', this.#s.shown);
      }
      this.#hash = createHash('sha256');
      this.#offset = 0;
      this.#prefix = EMPTY_SHA256;
      this.#received = 0;
    });
  }

  write(chunks: readonly Buffer[]): Promise<void> {
    return this.#serial(async () => {
      const handle = this.#open('write');
      let total = 0;
      for (const chunk of chunks) total += chunk.length;
      if (total === 0) return;
      const { size } = this.#s.options;
      if (this.#received + total > size) {
        throw new FerryError('size_mismatch', `Upload of ${this.#s.shown} passes its declared size of ${size} bytes`);
      }
      if (handle === null) {
        // Held until commit: copied, so that the caller may reuse its buffers.
        const held = this.#held as Buffer;
        for (const chunk of chunks) {
          held.set(chunk, this.#received);
          this.#hash.update(chunk);
          this.#received += chunk.length;
        }
        return;
      }
      const at = this.#received;
      const writing = writevFully(handle, chunks, at);
      // Hashed here while a pool thread writes the same bytes (both only read them): the two overlap instead of
      // taking turns. If the write fails, the upload fails with it; a digest that saw bytes the file did not
      // could only make a later commit refuse (digest_mismatch), never accept.
      for (const chunk of chunks) this.#hash.update(chunk);
      try {
        await writing;
      } catch (err) {
        await handle.truncate(at).catch(() => {});
        throw fail(err, 'upload', this.#s.shown);
      }
      this.#received += total;
    });
  }

  commit(sha256: string): Promise<Entry> {
    return this.#serial(async () => {
      const handle = this.#open('commit');
      const { shown, options, segments } = this.#s;
      if (this.#received !== options.size) {
        await this.#finish(false);
        throw new FerryError('size_mismatch', `Upload of ${shown} received ${this.#received} bytes of ${options.size} declared`);
      }
      if (this.#hash.digest('hex') !== sha256.toLowerCase()) {
        await this.#finish(false);
        throw digestMismatch(shown);
      }
      let mtime = options.mtime;
      if (handle === null) {
        const done: SmallOutcome = await commitSmall(this.#ctx.home, this.#ctx.commits as SmallCommits, {
          segments,
          shown,
          partial: this.#s.reservation.partial,
          options,
          bytes: this.#held as Buffer, // handed to the worker: unusable here from now on
          deferred: this.#s.small === 'deferred',
        });
        this.#held = null;
        if ('error' in done) {
          await this.#finish(done.partialKept);
          throw done.error;
        }
        this.#s.sidecarWritten = true; // in place: nothing to describe
        await this.#finish(true);
        return { name: segments.at(-1) ?? '', type: 'file', size: options.size, mtime: Math.floor(done.mtimeMs) };
      }
      try {
        if (mtime !== undefined) await handle.utimes(new Date(), utimeSeconds(mtime));
        await handle.sync();
        mtime ??= (await handle.stat()).mtimeMs;
        await handle.close();
        this.#handle = undefined;
        await placeUpload(this.#ctx.home, segments, shown, this.#s.reservation.partial, options);
      } catch (err) {
        await this.#finish(true);
        throw fail(err, 'upload', shown);
      }
      if (this.#s.sidecarWritten) await unlinkQuietly(this.#s.reservation.sidecar);
      this.#s.sidecarWritten = true; // the partial is in place now: nothing to describe
      await this.#finish(true);
      return { name: segments.at(-1) ?? '', type: 'file', size: options.size, mtime: Math.floor(mtime) };
    });
  }

  abort(keepPartial: boolean): Promise<void> {
    // Said at once, not after the writes queued before: a new upload of the target waits for this one to let go.
    if (!this.#finished) this.#s.reservation.ending();
    return this.#serial(async () => {
      await this.#finish(keepPartial);
    });
  }

  /** Closes the partial, deletes it unless `keep`, and releases the lock. Idempotent. */
  async #finish(keep: boolean): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    const { reservation } = this.#s;
    const handle = this.#handle;
    this.#handle = undefined;
    if (this.#held !== null) {
      // A small upload stopped before its commit: nothing of it is on the disk yet. Kept, it is written out as
      // a partial (with its sidecar), as a larger one would have been, so that an upload with `resume` goes on.
      const held = this.#held;
      this.#held = null;
      try {
        if (keep && this.#received > 0) {
          await writeHeld(reservation.partial, held.subarray(0, this.#received))
            .then(() => reservation.writeSidecar())
            .catch(() => {});
        }
      } finally {
        reservation.release();
      }
      return;
    }
    try {
      await handle?.close().catch(() => {});
      if (!keep) {
        await unlinkQuietly(reservation.partial);
        if (this.#s.sidecarWritten) await unlinkQuietly(reservation.sidecar);
      } else if (!this.#s.sidecarWritten) {
        await reservation.writeSidecar().catch(() => {}); // a description only: the partial stands without it
      }
    } finally {
      reservation.release();
    }
  }

  /** The open partial, or null for a small upload held in memory. */
  #open(what: string): FileHandle | null {
    if (this.#finished || (this.#handle === undefined && this.#held === null)) {
      throw new FerryError('internal', `Cannot ${what} the upload of ${this.#s.shown}: it is already finished`);
    }
    return this.#handle ?? null;
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op);
    this.#queue = run.catch(() => {});
    return run;
  }
}

async function openIfPresent(path: string, flags: number): Promise<FileHandle | undefined> {
  try {
    return await open(path, flags);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Feeds the first `length` bytes of the file into `hash`. */
async function hashPrefix(handle: FileHandle, length: number, hash: Hash): Promise<void> {
  const buffer = Buffer.allocUnsafe(Math.min(HASH_BUFFER, Math.max(length, 1)));
  let position = 0;
  while (position < length) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - position), position);
    if (bytesRead === 0) throw new FerryError('internal', 'A partial upload shrank while it was read');
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
}

/** Writes a small upload's held bytes as its partial file. */
async function writeHeld(partial: string, bytes: Buffer): Promise<void> {
  const handle = await open(partial, PARTIAL_FLAGS, 0o600);
  try {
    await writevFully(handle, [bytes], 0);
  } finally {
    await handle.close();
  }
}
