import type { FerryError } from '../core/errors.ts';
import type { Entry } from '../core/types.ts';

/**
 * Storage as the server sees it: one `Storage` per user, rooted at that user's home. Every path given
 * to a Storage method is a *virtual path*: what the client sent, not yet trusted. Implementations
 * validate it with `parseVirtualPath` (paths.ts) and confine it to the home; a violation throws
 * `FerryError('invalid_path', ...)`. Other failures throw FerryError with codes not_found, exists,
 * not_a_directory, is_a_directory, not_empty, busy, no_space, size_mismatch, digest_mismatch.
 *
 * The local-disk driver is the first implementation; an S3 driver will be the second, so nothing
 * outside storage/ may assume paths on a local disk.
 */
export interface Storage {
  /** Entry for a path, or null if nothing is there. `""` or `"."` is the home itself (type 'dir'). */
  stat(path: string): Promise<Entry | null>;
  /**
   * The entries of a directory in pages of at most `pageSize` (default 1000), sorted by name within a
   * page. Memory stays bounded whatever the directory size. Symlinks whose target leaves the home are
   * skipped; directories are `type: 'dir'` with size 0.
   */
  list(path: string, pageSize?: number): AsyncIterable<Entry[]>;
  /**
   * Everything under a directory, in pages, each entry named by its path relative to it (`a/b.h`), a folder
   * before what it holds (the same entries `list` gives, folder by folder). A folder reached twice (through a
   * symlink) is walked once. Memory is bounded by the page size and the depth of the tree.
   */
  listTree(path: string, pageSize?: number): AsyncIterable<Entry[]>;
  /** Opens a file for reading. */
  openRead(path: string): Promise<ReadHandle>;
  /**
   * Starts an upload. Nothing is visible at `path` until `commit()` succeeds.
   * - Refuses with `exists` when the target exists and `overwrite` is false; `is_a_directory` when it is a dir.
   * - Creates missing parent directories only with `parents: true` (else `not_found`).
   * - The bytes go to a partial file outside the home, keyed by (path, size). With `resume: true` and a
   *   partial of the same path and declared size present, `offset` is its length and `prefixSha256`
   *   the SHA-256 of those bytes; otherwise the partial starts empty (offset 0).
   * - A second upload of the same path while one is open throws `busy`.
   */
  createUpload(path: string, options: UploadOptions): Promise<Upload>;
  /**
   * Stores a small file whose bytes are all in memory, in one step: what `createUpload` (with `deferChecks`),
   * `write` and `commit` do together, with the same refusals, and `digest_mismatch` (nothing stored) when the
   * bytes differ from `options.sha256`. `bytes` becomes the storage's: the caller must not use it afterwards.
   * Nothing is kept of a refused file (there is no partial to resume).
   */
  putWhole(path: string, bytes: Buffer, options: WholeOptions): Promise<Entry>;
  /**
   * Takes a whole bundle of small files (protocol/bundle.ts `put` records) as one stream, where the driver can
   * store it better than file by file (the local driver: decoded and stored in its worker thread, off the event
   * loop). Null: not here; the caller stores each record with `putWhole`. Each record is refused or stored as
   * `putWhole` would, and reported to `options.onResult`.
   */
  openBundle(options: BundleOptions): Promise<BundleSink | null>;
  /**
   * Sends a whole bundle of files (protocol/bundle.ts: `want` records in, `file` records out) where the driver
   * can do it better than file by file (the local driver: read, hashed and packed in its worker thread). Null:
   * not here; the caller opens and reads each file. Each file is refused or read as `openRead` would.
   */
  openBundleRead(options: BundleReadOptions): Promise<BundleSink | null>;
  /** Removes a file or an empty directory. */
  remove(path: string): Promise<void>;
  mkdir(path: string, options?: { parents?: boolean }): Promise<void>;
  /** Renames a file or directory within the home; `exists` if the target exists and overwrite is false. */
  rename(from: string, to: string, options?: { overwrite?: boolean }): Promise<void>;
  /**
   * The SHA-256 (hex) recorded for a file when it was stored, without reading it; null when the storage has none
   * for it (the caller then reads and hashes the file). Optional: a driver that records none leaves it out.
   */
  recordedSha256?(path: string): Promise<string | null>;
  /** Total bytes and file count stored in the home (used by LIST totals and, later, quotas). */
  usage(): Promise<{ bytes: number; files: number }>;
}

export interface UploadOptions {
  /** Declared size of the complete file. */
  size: number;
  overwrite?: boolean;
  parents?: boolean;
  resume?: boolean;
  /** Modification time to set on the committed file (ms since epoch). */
  mtime?: number;
  /**
   * The caller needs no answer before the bytes come (no `replaces`, no `createsParents`): a driver may then
   * leave every check of the target (exists, is a directory, missing parents, confinement) to `commit`, which
   * fails with the same errors. The local driver does so for small uploads, which it commits in one hop.
   */
  deferChecks?: boolean;
  /** Whether missing parent directories may be created (the caller's `mkdir` permission); checked with `deferChecks`. */
  mayCreateParents?: boolean;
}

export interface WholeOptions {
  /** The SHA-256 (lowercase hex) the bytes must have. */
  sha256: string;
  overwrite?: boolean;
  parents?: boolean;
  /** Modification time to set on the stored file (ms since epoch). */
  mtime?: number;
  /** Whether missing parent directories may be created (the caller's `mkdir` permission). */
  mayCreateParents?: boolean;
}

export interface BundleOptions {
  /** Whether a record that asks to overwrite may (the account's permission). */
  mayOverwrite: boolean;
  /** Whether missing folders may be created for a record that asks for them (the account's `mkdir`). */
  mayCreateParents: boolean;
  /** Larger files are refused with `too_large`. */
  maxFileBytes: number;
  /** Largest record header and body accepted (the server's maxMessage and maxData); a larger one is `bad_message`. */
  maxHeader: number;
  maxBody: number;
  /** What became of each record (by its place in the stream, from 0): stored (`entry`), or refused (`error`). */
  onResult(result: BundleResult): void;
  /** The stream is malformed (`bad_message`), or the storage failed: nothing more is stored. Called at once, once. */
  onBroken(err: FerryError): void;
}

export type BundleResult = { index: number; path: string; size: number; overwriteAsked: boolean } & (
  | { entry: Entry; sha256: string; error?: undefined }
  | { error: FerryError; entry?: undefined }
);

export interface BundleReadOptions {
  /** Larger files are refused with `too_large` (the most a record may carry to the client). */
  maxFileBytes: number;
  /** Largest `want` record header accepted (the server's maxMessage); a larger one is `bad_message`. */
  maxHeader: number;
  /** Bytes of records per piece, at most. */
  frame: number;
  /**
   * The `file` records, packed: each piece holds HEADER_SIZE free bytes, then records; false: wait for `drained`.
   * `written(piece)` is called once the transport no longer needs a piece (the storage may then fill it again).
   */
  send(pieces: Buffer[], written: (piece: Buffer) => void): boolean;
  drained(): Promise<void>;
  /** What became of each file wanted (by its place in the stream, from 0): sent (`size`, `sha256`), or refused. */
  onResult(result: BundleReadResult): void;
  /** The stream is malformed (`bad_message`), or the storage failed: nothing more is read. Called at once, once. */
  onBroken(err: FerryError): void;
}

export type BundleReadResult = { index: number; path: string } & ({ size: number; sha256: string; error?: undefined } | { error: FerryError });

/** A bundle being stored (`Storage.openBundle`) or read (`openBundleRead`: the bytes written are the `want` records). A malformed stream rejects `write`, `end` or `settled` with `bad_message`. */
export interface BundleSink {
  /** The stream's next bytes (the caller may reuse them once this returns); resolves when more may come. */
  write(chunks: readonly Buffer[]): Promise<void>;
  /** Resolves once the records completed by the bytes written so far are stored or refused. */
  settled(): Promise<void>;
  /** The stream ended: resolves once every record is stored or refused (`bad_message` if it ended inside one). */
  end(): Promise<void>;
  /** Stops: bytes not yet taken are dropped (records already complete may still be stored and reported). */
  abort(): void;
}

export interface ReadHandle {
  readonly size: number;
  readonly mtime: number;
  /** Reads up to `length` bytes at `position` into a fresh buffer; an empty buffer at end of file. */
  read(position: number, length: number): Promise<Buffer>;
  /**
   * Reads up to `target.length` bytes at `position` into `target` (a buffer the caller reuses); resolves to the
   * count read, 0 at end of file. Never reads past the size the file had when opened.
   */
  readInto(target: Buffer, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface Upload {
  /** Bytes already in the partial file (resume); data written next continues from here. */
  readonly offset: number;
  /** SHA-256 (hex) of the first `offset` bytes; the SHA-256 of the empty string when offset is 0. */
  readonly prefixSha256: string;
  /** What the path held as the upload started: the entry of the file it replaces, or null (also when not looked up: `deferChecks`). */
  readonly replaces: Entry | null;
  /** Whether committing will create missing parent directories (only with `parents: true`; false when not looked up). */
  readonly createsParents: boolean;
  /** Bytes held so far (offset + written). */
  readonly received: number;
  /** Drops the partial bytes and starts again from 0 (the client's copy of the prefix differed). */
  restart(): Promise<void>;
  /** Appends bytes (in order). Throws `size_mismatch` if they would pass the declared size. */
  write(chunks: readonly Buffer[]): Promise<void>;
  /**
   * Verifies size and SHA-256 against `sha256` (hex) over the whole file, fsyncs, and atomically renames
   * into place (respecting `overwrite` again at that moment). On a mismatch the partial is deleted and
   * `size_mismatch` / `digest_mismatch` thrown. Returns the final entry.
   */
  commit(sha256: string): Promise<Entry>;
  /** Stops the upload. keepPartial: true leaves the partial for a later resume (connection lost); false deletes it. */
  abort(keepPartial: boolean): Promise<void>;
}

/** A storage driver hands out one Storage per user. */
/**
 * Claims on object keys shared by several servers on one store (src/db: a table in their database), so that one
 * upload per target runs across all of them, as NameLocks does within one server. `take` gives a token, or null
 * when another server holds the key; `give` hands it back (a late `give` never frees a later claim).
 */
export interface NameLeases {
  take(key: string): Promise<string | null>;
  give(key: string, token: string): Promise<void>;
}

export interface StorageDriver {
  forUser(user: string): Storage;
  /** Deletes partial uploads older than maxAgeMs (run at start-up and periodically). */
  sweepPartials(maxAgeMs: number): Promise<number>;
}
