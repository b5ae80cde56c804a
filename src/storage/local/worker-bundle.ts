import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readlinkSync, readSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.ts';
import { parseVirtualPath } from '../../core/paths.ts';
import { encodeRecordHeader, RecordDecoder, type BundleRecord } from '../../protocol/bundle.ts';
import { HEADER_SIZE } from '../../protocol/frame.ts';
import { inside, READ_FLAGS, readRefusal } from './confine.ts';
import type { BundleOutcome, BundleReadSpec, BundleReply, BundleSpec, ReadOutcome, SmallCommit, SmallCommitResult } from './jobs.ts';
import { commit, failure, mkdirsSync, place, PlacedDirs, read, ReadDirs } from './sync.ts';

/**
 * A bundle stored in the commit worker (see jobs.ts `BundleMessage`): the stream's bytes come in pieces of any
 * size; each record they complete is checked (its path, its size) and stored as a small commit is (the digest
 * first, then the partial, the checks of its folder and target, the placing), its folders created first when
 * the record asks for them and the account may, and the folders' fsyncs made once per piece. A record that is
 * not stored leaves nothing behind: a bundle has no partials to resume.
 */
export class WorkerBundle {
  readonly #id: number;
  readonly #spec: BundleSpec;
  readonly #decoder: RecordDecoder<'put'>;
  #records: Array<{ index: number; record: BundleRecord<'put'> }> = [];
  /** Why the stream is broken; nothing more is stored once it is. */
  #broken: { code: string; message: string } | null = null;

  constructor(id: number, spec: BundleSpec) {
    this.#id = id;
    this.#spec = spec;
    // The pieces are this worker's own (handed over, never reused): a body inside one is used where it lies.
    this.#decoder = new RecordDecoder('put', { maxHeader: spec.maxHeader, maxBody: spec.maxBody, views: true }, (record) => {
      this.#records.push({ index: this.#decoder.count - 1, record });
    });
  }

  /** Decodes the next bytes and stores the records they complete. */
  take(seq: number, chunks: readonly Uint8Array[]): BundleReply {
    // The records before any damage are stored; the connection is ended by the event loop.
    this.#broken ??= decode(this.#decoder, chunks);
    const records = this.#records;
    this.#records = [];
    const dirs = new PlacedDirs();
    const outcomes: BundleOutcome[] = [];
    const jobs = new Map<BundleOutcome, SmallCommit>();
    for (const { index, record } of records) outcomes.push(this.#store(index, record, dirs, jobs));
    const failed = dirs.finish();
    for (let i = 0; i < outcomes.length; i++) {
      const outcome = outcomes[i] as BundleOutcome;
      const job = jobs.get(outcome);
      const why = job !== undefined ? failed.get(job) : undefined;
      if (why !== undefined) outcomes[i] = { index: outcome.index, path: outcome.path, size: outcome.size, overwrite: outcome.overwrite, ok: false, ...why };
    }
    return { bundle: this.#id, seq, outcomes, ...(this.#broken !== null ? { error: this.#broken } : {}) };
  }

  /** The end of the stream: it must end between two records. */
  end(seq: number): BundleReply {
    if (this.#broken === null && !this.#decoder.atBoundary) this.#broken = { code: 'bad_message', message: 'The bundle ends inside a record' };
    return { bundle: this.#id, seq, outcomes: [], ...(this.#broken !== null ? { error: this.#broken } : {}) };
  }

  #store(index: number, { header, body, digest }: BundleRecord<'put'>, dirs: PlacedDirs, jobs: Map<BundleOutcome, SmallCommit>): BundleOutcome {
    const spec = this.#spec;
    const { path, size, mtime, overwrite = false, parents = false } = header;
    const base = { index, path, size, overwrite };
    let segments: string[];
    try {
      segments = parseVirtualPath(path);
    } catch (e) {
      return { ...base, ok: false, refused: 'invalid_path', message: (e as Error).message };
    }
    const name = segments.at(-1);
    if (name === undefined) return { ...base, ok: false, refused: 'is_a_directory' };
    if (size > spec.maxFile) return { ...base, ok: false, refused: 'too_large' };
    const folders = segments.slice(0, -1);
    const m: SmallCommit = {
      partial: join(spec.partials, `${spec.token}-${index}.part`),
      chunks: [body as Buffer],
      mtime: mtime ?? null,
      dir: join(spec.home, ...folders),
      home: spec.home,
      name,
      overwrite: overwrite && spec.mayOverwrite,
      sha256: (digest as Buffer).toString('hex'),
    };
    let r: SmallCommitResult = commit(m, dirs);
    if (!r.ok && r.stage === 'place' && r.refused === undefined && (r.code === 'ENOENT' || r.code === 'ENOTDIR') && parents) {
      if (!spec.mayCreateParents) {
        unlinkQuietly(m.partial);
        return { ...base, ok: false, refused: 'mkdir' };
      }
      r = this.#inNewFolders(m, folders, r.mtimeMs ?? 0, dirs);
    }
    if (!r.ok) {
      if (r.stage === 'place') unlinkQuietly(m.partial);
      if (r.stage === 'verify') return { ...base, ok: false, refused: 'digest' };
      return { ...base, ok: false, ...(r.refused !== undefined ? { refused: r.refused } : {}), ...(r.code !== undefined ? { code: r.code } : {}), ...(r.message !== undefined ? { message: r.message } : {}) };
    }
    const outcome: BundleOutcome = { ...base, ok: true, mtimeMs: r.mtimeMs, sha256: m.sha256 as string };
    jobs.set(outcome, m);
    return outcome;
  }

  /** The record's folders are missing: made (confined, as `mkdirs`), then the written partial placed. */
  #inNewFolders(m: SmallCommit, folders: readonly string[], mtimeMs: number, dirs: PlacedDirs): SmallCommitResult {
    try {
      const refused = mkdirsSync(this.#spec.home, folders) ?? place(m, dirs);
      return refused === null ? { ok: true, mtimeMs } : { ok: false, stage: 'place', refused };
    } catch (e) {
      return { ok: false, stage: 'place', ...failure(e) };
    }
  }
}

/** Pushes the pieces into the decoder; what broke the stream, or null. */
function decode(decoder: RecordDecoder<'put'> | RecordDecoder<'want'>, chunks: readonly Uint8Array[]): { code: string; message: string } | null {
  try {
    for (const c of chunks) decoder.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
    return null;
  } catch (e) {
    if (e instanceof FerryError) return { code: e.code, message: e.message };
    return { code: 'bad_message', message: String((e as Error | null)?.message ?? e) };
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Never made, or gone.
  }
}

/** Bytes of `file` records a download bundle packs per answer, about (a file is never split across answers). */
const PACK_BUDGET = 4 * 1024 * 1024;

/** Pieces kept for reuse per download bundle, at most (the budget's worth and the frames in the socket's queue). */
const MAX_FREE_PIECES = 16;

/** The bytes of a download bundle, packed into pieces that each become one DATA frame (HEADER_SIZE free bytes first). */
class Pieces {
  readonly #frame: number;
  #piece: Buffer | null = null;
  #at = HEADER_SIZE;
  done: Buffer[] = [];
  /** Bytes packed since the last `take`. */
  bytes = 0;
  /** Pieces the event loop has sent and handed back, to be filled again (fewer fresh allocations and page faults). */
  readonly free: ArrayBuffer[] = [];

  constructor(frame: number) {
    this.#frame = frame;
  }

  write(bytes: Uint8Array): void {
    this.bytes += bytes.length;
    for (let from = 0; from < bytes.length; ) {
      const piece = (this.#piece ??= this.#fresh());
      const n = Math.min(bytes.length - from, piece.length - this.#at);
      piece.set(bytes.subarray(from, from + n), this.#at);
      this.#at += n;
      from += n;
      if (this.#at === piece.length) this.#seal();
    }
  }

  /** The pieces made so far, the last one cut where its bytes end. */
  take(): Buffer[] {
    this.#seal();
    const done = this.done;
    this.done = [];
    this.bytes = 0;
    return done;
  }

  #fresh(): Buffer {
    const reused = this.free.pop();
    return reused !== undefined && reused.byteLength === HEADER_SIZE + this.#frame ? Buffer.from(reused) : Buffer.allocUnsafeSlow(HEADER_SIZE + this.#frame);
  }

  #seal(): void {
    if (this.#piece === null || this.#at === HEADER_SIZE) return;
    this.done.push(this.#piece.subarray(0, this.#at));
    this.#piece = null;
    this.#at = HEADER_SIZE;
  }
}

/**
 * A download bundle read in the commit worker: the `want` records come in pieces of the stream; each file named
 * is checked as openRead checks it (its folder opened and checked inside the home through /proc/self/fd, the
 * name opened there without following it; a final symlink is resolved and checked as `read` does), read whole,
 * hashed, and packed as a `file` record into pieces that the event loop sends as they are.
 */
export class WorkerBundleRead {
  readonly #id: number;
  readonly #spec: BundleReadSpec;
  readonly #decoder: RecordDecoder<'want'>;
  #wanted: Array<{ index: number; path: string }> = [];
  #broken: { code: string; message: string } | null = null;
  readonly #pieces: Pieces;
  /** One buffer for every file read (each is copied into the pieces at once). */
  #scratch = Buffer.allocUnsafeSlow(64 * 1024);

  constructor(id: number, spec: BundleReadSpec) {
    this.#id = id;
    this.#spec = spec;
    this.#pieces = new Pieces(spec.frame);
    this.#decoder = new RecordDecoder('want', { maxHeader: spec.maxHeader, maxBody: 0 }, (record) => {
      this.#wanted.push({ index: this.#decoder.count - 1, path: record.header.path });
    });
  }

  take(seq: number, chunks: readonly Uint8Array[]): BundleReply {
    this.#broken ??= decode(this.#decoder, chunks);
    // Packed up to the budget per answer: the rest waits here until the event loop asks (after the client has
    // taken what went before), so that a bundle's memory is bounded by the budget, not by its names.
    const read = this.#readWanted(PACK_BUDGET);
    const pieces = this.#pieces.take();
    const more = this.#broken === null && this.#wanted.length > 0;
    return { bundle: this.#id, seq, outcomes: [], read, pieces, ...(more ? { more } : {}), ...(this.#broken !== null ? { error: this.#broken } : {}) };
  }

  /** Pieces sent and handed back (see Pieces.free); a few are kept. */
  give(buffers: readonly ArrayBuffer[]): void {
    for (const b of buffers) if (this.#pieces.free.length < MAX_FREE_PIECES) this.#pieces.free.push(b);
  }

  end(seq: number): BundleReply {
    if (this.#broken === null && !this.#decoder.atBoundary) this.#broken = { code: 'bad_message', message: 'The bundle ends inside a record' };
    // The event loop ends a bundle once nothing waits (Channel.end): names left here would be a bug there, and
    // are still answered rather than dropped.
    const read = this.#broken === null ? this.#readWanted(Infinity) : [];
    this.#wanted = [];
    return { bundle: this.#id, seq, outcomes: [], read, pieces: this.#pieces.take(), ...(this.#broken !== null ? { error: this.#broken } : {}) };
  }

  /** Reads and packs the files wanted, in order, until `budget` bytes are packed; the rest stay wanted. */
  #readWanted(budget: number): ReadOutcome[] {
    const dirs = new ReadDirs();
    const read: ReadOutcome[] = [];
    let next = 0;
    try {
      while (next < this.#wanted.length && this.#pieces.bytes < budget) {
        const { index, path } = this.#wanted[next++] as { index: number; path: string };
        read.push(this.#send(index, path, dirs));
      }
    } finally {
      dirs.close();
      this.#wanted.splice(0, next);
    }
    return read;
  }

  #send(index: number, path: string, dirs: ReadDirs): ReadOutcome {
    const { home, maxFile } = this.#spec;
    let segments: string[];
    try {
      segments = parseVirtualPath(path);
    } catch (e) {
      return { index, path, ok: false, refused: 'invalid_path', message: (e as Error).message };
    }
    const name = segments.at(-1);
    if (name === undefined) return { index, path, ok: false, refused: 'is_a_directory' };
    let fd: number;
    try {
      const at = dirs.open(join(home, ...segments.slice(0, -1)));
      if (!inside(readlinkSync(at), home)) return { index, path, ok: false, refused: 'leaves' };
      fd = openSync(`${at}/${name}`, READ_FLAGS);
    } catch (e) {
      const code = (e as { code?: string }).code;
      // A symlink as the last component: resolved and checked the long way (it may lead inside the home).
      if (code === 'ELOOP') return this.#viaLink(index, path, join(home, ...segments));
      return { index, path, ok: false, ...failure(e) };
    }
    try {
      const info = fstatSync(fd);
      const refused = readRefusal(info);
      if (refused !== null) return { index, path, ok: false, refused };
      if (info.size > maxFile) return { index, path, ok: false, refused: 'too_large' };
      if (this.#scratch.length < info.size) this.#scratch = Buffer.allocUnsafeSlow(info.size);
      let got = 0;
      while (got < info.size) {
        const n = readSync(fd, this.#scratch, got, info.size - got, got);
        if (n === 0) break; // shrank since fstat: what was read is what is sent (and hashed)
        got += n;
      }
      return this.#pack(index, path, this.#scratch.subarray(0, got), info.mtimeMs);
    } catch (e) {
      return { index, path, ok: false, ...failure(e) };
    } finally {
      closeSync(fd);
    }
  }

  /** A file named through a symlink: read as `read` reads it (resolved, checked inside the home). */
  #viaLink(index: number, path: string, absolute: string): ReadOutcome {
    try {
      const r = read({ path: absolute, home: this.#spec.home, max: this.#spec.maxFile });
      if (!r.ok) return { index, path, ok: false, ...(r.code !== undefined ? { code: r.code } : {}), ...(r.message !== undefined ? { message: r.message } : {}) };
      if (r.refused !== undefined) return { index, path, ok: false, refused: r.refused };
      if (r.large === true) return { index, path, ok: false, refused: 'too_large' };
      return this.#pack(index, path, Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength), r.mtimeMs);
    } catch (e) {
      return { index, path, ok: false, ...failure(e) };
    }
  }

  #pack(index: number, path: string, body: Buffer, mtimeMs: number): ReadOutcome {
    const digest = createHash('sha256').update(body).digest();
    this.#pieces.write(encodeRecordHeader('file', { index, size: body.length, mtime: Math.floor(mtimeMs) }));
    this.#pieces.write(body);
    this.#pieces.write(digest);
    return { index, path, ok: true, size: body.length, sha256: digest.toString('hex') };
  }
}
