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
  /** Removes a file or an empty directory. */
  remove(path: string): Promise<void>;
  mkdir(path: string, options?: { parents?: boolean }): Promise<void>;
  /** Renames a file or directory within the home; `exists` if the target exists and overwrite is false. */
  rename(from: string, to: string, options?: { overwrite?: boolean }): Promise<void>;
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
export interface StorageDriver {
  forUser(user: string): Storage;
  /** Deletes partial uploads older than maxAgeMs (run at start-up and periodically). */
  sweepPartials(maxAgeMs: number): Promise<number>;
}
