import type { Limits } from './options.ts';
import { formatSize } from '../../src/plugin/mod.ts';

/** A directory of the tree; a file is just its size in bytes. */
export class Dir {
  readonly children = new Map<string, Dir | number>();
}

/** What `reserve` needs to know about an upload (a subset of the plugin host's UploadOp). */
export interface UploadClaim {
  path: string;
  /** Declared size in bytes. */
  size: number;
  /** The entry the upload would replace, as the server saw it before the upload started. */
  replaces: { type: string; size: number } | null;
}

/** Space held for an upload in progress. */
export interface Reservation {
  path: string;
  size: number;
  bytes: number;
  files: number;
  /** Whether the replaced file was counted as freed (only one upload in progress per path may do that). */
  credited: boolean;
}

export type ReserveResult = { ok: true; reservation: Reservation } | { ok: false; message: string };

/** Figures for one user; `reserved*` are held by uploads in progress and not yet in `bytes`/`files`. */
export interface LedgerUsage {
  bytes: number;
  files: number;
  reservedBytes: number;
  reservedFiles: number;
}

/**
 * Canonical segments of a virtual path as the storage resolves it: NFC, empty and `.` segments dropped
 * (`a//b/./c/` is `a/b/c`). Paths the storage would refuse never reach the accounting (their operations fail).
 */
export function pathSegments(path: string): string[] {
  return path
    .normalize('NFC')
    .split('/')
    .filter((s) => s !== '' && s !== '.');
}

function totals(node: Dir | number): { bytes: number; files: number } {
  if (typeof node === 'number') return { bytes: node, files: 1 };
  let bytes = 0;
  let files = 0;
  const pending: Dir[] = [node];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    for (const child of dir.children.values()) {
      if (typeof child === 'number') {
        bytes += child;
        files++;
      } else {
        pending.push(child);
      }
    }
  }
  return { bytes, files };
}

/**
 * One user's stored files and the space held by their uploads in progress. Pure bookkeeping, no I/O:
 * the tree mirrors the home (path -> file size), so every after-the-fact change is applied to what is
 * known to be at a path rather than to what a caller believed was there, and totals cannot drift when
 * operations race. `reserve` checks and holds space in one synchronous step, so two uploads can never
 * both pass a limit that only one of them fits.
 *
 * @example
 * ```ts
 * const ledger = new Ledger();
 * ledger.setFile('a.txt', 100);
 * const r = ledger.reserve({ path: 'b.txt', size: 50, replaces: null }, { maxBytes: 120 });
 * r.ok; // false: 100 of 120 bytes used, the upload needs 50
 * ```
 */
export class Ledger {
  readonly #root: Dir;
  #bytes = 0;
  #files = 0;
  #reservedBytes = 0;
  #reservedFiles = 0;
  /** Reservations by the object that identifies the upload (the host passes the same op to before and after). */
  readonly #reservations = new Map<object, Reservation>();
  /** Paths whose current file an upload in progress has already counted as freed. */
  readonly #credited = new Set<string>();

  constructor(root: Dir = new Dir()) {
    this.#root = root;
    const sum = totals(root);
    this.#bytes = sum.bytes;
    this.#files = sum.files;
  }

  usage(): LedgerUsage {
    return { bytes: this.#bytes, files: this.#files, reservedBytes: this.#reservedBytes, reservedFiles: this.#reservedFiles };
  }

  /** Size of the file at `path`, or null when no file is known there. */
  sizeOf(path: string): number | null {
    const node = this.#find(pathSegments(path));
    return typeof node === 'number' ? node : null;
  }

  /**
   * Checks an upload against `limits` and, when it fits, holds its space until `finish`. Needs the declared
   * size minus the size of the file it replaces (never less than 0: the old file stays until the commit),
   * and one file unless it replaces one. An upload that needs nothing more always passes, even over a
   * limit (replacing a file by a smaller one is how a user gets back under).
   */
  reserve(key: object, upload: UploadClaim, limits: Limits): ReserveResult {
    const path = pathSegments(upload.path).join('/');
    const current = this.sizeOf(path);
    const credited = upload.replaces?.type === 'file' && current !== null && !this.#credited.has(path);
    const freed = credited ? Math.min(current, upload.replaces?.size ?? 0) : 0;
    const bytes = Math.max(0, upload.size - freed);
    const files = credited ? 0 : 1;
    const problems: string[] = [];
    if (bytes > 0 && limits.maxBytes !== undefined && this.#bytes + this.#reservedBytes + bytes > limits.maxBytes) {
      const used = this.#bytes + this.#reservedBytes;
      const pending = this.#reservedBytes > 0 ? ` (${formatSize(this.#reservedBytes)} of it by uploads in progress)` : '';
      problems.push(`${formatSize(used)} of ${formatSize(limits.maxBytes)} used${pending}, upload needs ${formatSize(bytes)}`);
    }
    if (files > 0 && limits.maxFiles !== undefined && this.#files + this.#reservedFiles + files > limits.maxFiles) {
      const used = this.#files + this.#reservedFiles;
      const pending = this.#reservedFiles > 0 ? ` (${this.#reservedFiles} of them by uploads in progress)` : '';
      problems.push(`${used} of ${limits.maxFiles} files used${pending}, upload needs 1 more file`);
    }
    if (problems.length > 0) return { ok: false, message: `quota exceeded: ${problems.join('; ')}` };
    const reservation: Reservation = { path, size: upload.size, bytes, files, credited };
    this.#reservations.set(key, reservation);
    this.#reservedBytes += bytes;
    this.#reservedFiles += files;
    if (credited) this.#credited.add(path);
    return { ok: true, reservation };
  }

  /**
   * Ends the upload `key` reserved for: the held space is released, and when it was committed the file is
   * recorded at its path with its declared size (replacing whatever was known there). When nothing was
   * reserved under `key`, the oldest reservation for the same path and size is released instead.
   */
  finish(key: object, upload: Pick<UploadClaim, 'path' | 'size'>, committed: boolean): void {
    let found = this.#reservations.has(key) ? key : undefined;
    // A host that passed a copy of the op: the oldest reservation for the same path and size is this one.
    if (found === undefined) {
      const path = pathSegments(upload.path).join('/');
      for (const [k, r] of this.#reservations) {
        if (r.path === path && r.size === upload.size) {
          found = k;
          break;
        }
      }
    }
    const reservation = found === undefined ? undefined : this.#reservations.get(found);
    if (found !== undefined && reservation) {
      this.#reservations.delete(found);
      this.#reservedBytes -= reservation.bytes;
      this.#reservedFiles -= reservation.files;
      if (reservation.credited) this.#credited.delete(reservation.path);
    }
    if (committed) this.setFile(upload.path, upload.size);
  }

  /** Records a file of `size` bytes at `path`, replacing what was there; missing directories are made. */
  setFile(path: string, size: number): void {
    const segments = pathSegments(path);
    const name = segments.pop();
    if (name === undefined) return;
    const dir = this.#dirFor(segments);
    const old = dir.children.get(name);
    if (old !== undefined) this.#subtract(old);
    dir.children.set(name, size);
    this.#bytes += size;
    this.#files++;
  }

  /** Forgets a deleted file or directory (and anything known below it). */
  remove(path: string): void {
    const segments = pathSegments(path);
    const name = segments.pop();
    if (name === undefined) return;
    const dir = this.#find(segments);
    if (!(dir instanceof Dir)) return;
    const node = dir.children.get(name);
    if (node === undefined) return;
    dir.children.delete(name);
    this.#subtract(node);
  }

  /** Moves a file or directory; whatever was at `to` is replaced (a file, or an empty directory). */
  rename(from: string, to: string): void {
    const source = pathSegments(from);
    const dest = pathSegments(to);
    if (source.join('/') === dest.join('/')) return;
    const name = source.pop();
    const parent = this.#find(source);
    const node = name !== undefined && parent instanceof Dir ? parent.children.get(name) : undefined;
    const destName = dest.pop();
    // A source the tree does not know: a walk of the home already saw the result of this rename.
    if (node === undefined || destName === undefined) return;
    (parent as Dir).children.delete(name as string);
    const destDir = this.#dirFor(dest);
    const replaced = destDir.children.get(destName);
    if (replaced !== undefined) this.#subtract(replaced);
    // Moving within the tree changes no totals.
    destDir.children.set(destName, node);
  }

  #subtract(node: Dir | number): void {
    const sum = totals(node);
    this.#bytes -= sum.bytes;
    this.#files -= sum.files;
  }

  #find(segments: readonly string[]): Dir | number | undefined {
    let node: Dir | number | undefined = this.#root;
    for (const segment of segments) {
      if (!(node instanceof Dir)) return undefined;
      node = node.children.get(segment);
    }
    return node;
  }

  /** The directory node at `segments`, made where missing (a file in the way is stale and replaced). */
  #dirFor(segments: readonly string[]): Dir {
    let dir = this.#root;
    for (const segment of segments) {
      let next = dir.children.get(segment);
      if (!(next instanceof Dir)) {
        if (next !== undefined) this.#subtract(next);
        next = new Dir();
        dir.children.set(segment, next);
      }
      dir = next;
    }
    return dir;
  }
}
