/**
 * The synchronous file-system work of the commit worker (worker.ts): writing and placing a small upload, reading
 * a small file, creating folders, each with the confinement checks of home.ts made through opened directories
 * (`/proc/self/fd/N`), decided by the same pure functions (confine.ts). Only the worker calls these: on the event
 * loop they would block every client.
 */
import {
  closeSync, fstatSync, fsyncSync, futimesSync, lstatSync, mkdirSync, openSync, readlinkSync, readSync, realpathSync, renameSync, statSync,
  unlinkSync, writeSync, type Stats,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { placeNoReplaceSync } from '../../fs/place.ts';
import { utimeSeconds } from '../../fs/time.ts';
import { DIR_FLAGS, inside, linkRefusal, O_NOFOLLOW, PARTIAL_FLAGS, pinnedPath, READ_FLAGS, readRefusal, targetRefusal, type Refusal } from './confine.ts';
import type { SmallCommit, SmallCommitResult, SmallRead, SmallReadResult } from './jobs.ts';

const realpath = realpathSync.native;

/** The partial: created (never through a link), written, timed, made durable. Returns its mtime (ms). */
export function writePartial(m: SmallCommit): number {
  const fd = openSync(m.partial, PARTIAL_FLAGS, 0o600);
  try {
    let position = 0;
    for (const chunk of m.chunks) {
      for (let done = 0; done < chunk.length; ) {
        const n = writeSync(fd, chunk, done, chunk.length - done, position);
        if (n === 0) throw Object.assign(new Error('the disk accepted no bytes'), { code: 'EIO' });
        done += n;
        position += n;
      }
    }
    if (m.mtime !== null) futimesSync(fd, new Date(), utimeSeconds(m.mtime));
    fsyncSync(fd);
    return m.mtime !== null ? m.mtime : fstatSync(fd).mtimeMs;
  } finally {
    closeSync(fd);
  }
}

export function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return null;
    throw err;
  }
}

/** What stands at the target, checked as home.ts's checkTarget checks it. */
export function targetCheck(target: string, home: string, overwrite: boolean): Refusal | null {
  const info = lstatOrNull(target);
  if (info === null) return null;
  let directory = info.isDirectory();
  if (info.isSymbolicLink()) {
    let real: string | null = null;
    try {
      real = realpath(target);
    } catch {
      // Dangling, or a loop: leads nowhere.
    }
    const leaves = linkRefusal(real, home);
    if (leaves !== null) return leaves;
    try {
      directory = statSync(target).isDirectory();
    } catch {
      directory = false;
    }
  }
  return targetRefusal(true, directory, overwrite);
}

/**
 * The directories a batch of jobs placed files in: each opened once per batch (by the path the jobs name it
 * with), and fsynced once at the end of the batch however many files went into it (`finish`): a reply says
 * "placed" only once the directory entry is durable.
 */
export class PlacedDirs {
  readonly #open = new Map<string, { fd: number; at: string }>();
  /** Real path -> descriptor of each directory to fsync. */
  readonly #toSync = new Map<string, number>();
  /** The real path of the directory each job's file went into. */
  readonly #placed = new Map<SmallCommit, string>();

  /** The directory `dir`, opened (once per batch): its descriptor's path in /proc/self/fd. */
  open(dir: string): string {
    let d = this.#open.get(dir);
    if (d === undefined) {
      const fd = openSync(dir, DIR_FLAGS);
      d = { fd, at: pinnedPath(fd) };
      this.#open.set(dir, d);
    }
    return d.at;
  }

  /** `m`'s file went into `dir` (opened with `open`), whose real path is `real`. */
  placed(m: SmallCommit, dir: string, real: string): void {
    const d = this.#open.get(dir);
    if (d !== undefined && !this.#toSync.has(real)) this.#toSync.set(real, d.fd);
    this.#placed.set(m, real);
  }

  /**
   * fsyncs each directory that received a file and closes them all; returns, for each job placed in a directory
   * whose fsync failed, why (its file is in place, but not durably).
   */
  finish(): Map<SmallCommit, { code?: string; message: string }> {
    const failedDirs = new Map<string, { code?: string; message: string }>();
    for (const [real, fd] of this.#toSync) {
      try {
        fsyncSync(fd);
      } catch (e) {
        failedDirs.set(real, failure(e));
      }
    }
    for (const { fd } of this.#open.values()) {
      try {
        closeSync(fd);
      } catch {
        // Closed is closed.
      }
    }
    const failed = new Map<SmallCommit, { code?: string; message: string }>();
    if (failedDirs.size > 0) {
      for (const [m, real] of this.#placed) {
        const why = failedDirs.get(real);
        if (why !== undefined) failed.set(m, why);
      }
    }
    this.#open.clear();
    this.#toSync.clear();
    this.#placed.clear();
    return failed;
  }
}

/** Folders opened for reading files in them, once per batch (the caller checks each is inside the home). */
export class ReadDirs {
  readonly #open = new Map<string, string>();
  readonly #fds: number[] = [];

  /** The folder `dir`, opened (links followed): its descriptor's path in /proc/self/fd. */
  open(dir: string): string {
    let at = this.#open.get(dir);
    if (at === undefined) {
      const fd = openSync(dir, DIR_FLAGS);
      this.#fds.push(fd);
      at = pinnedPath(fd);
      this.#open.set(dir, at);
    }
    return at;
  }

  close(): void {
    for (const fd of this.#fds) {
      try {
        closeSync(fd);
      } catch {
        // Closed is closed.
      }
    }
    this.#fds.length = 0;
    this.#open.clear();
  }
}

/**
 * Into the opened directory, checked (again, for each job: it may have moved) to be inside the home. Returns
 * null when placed, or why it was refused.
 */
export function place(m: SmallCommit, dirs: PlacedDirs): Refusal | null {
  const at = dirs.open(m.dir);
  const real = readlinkSync(at);
  if (!inside(real, m.home)) return 'leaves';
  const target = `${at}/${m.name}`;
  if (m.overwrite) {
    const refused = targetCheck(target, m.home, true);
    if (refused !== null) return refused;
    renameSync(m.partial, target);
  } else {
    // Placed without replacing: a name in the way makes the link fail, and only then is it looked at, to say
    // what is there (a file, a directory, a link that leaves the home).
    try {
      placeNoReplaceSync(m.partial, target);
    } catch (e) {
      if ((e as { code?: string }).code !== 'EEXIST') throw e;
      return targetCheck(target, m.home, false) ?? 'exists';
    }
  }
  dirs.placed(m, m.dir, real);
  return null;
}

/**
 * Creates the missing folders `segments` below the home, each inside the one before it, opened and checked in
 * turn as home.ts's `mkdirs` does (a symlink on the way is followed only where it stays inside the home; a file
 * in the way is ENOTDIR). Returns a refusal, or null once the last one exists.
 */
export function mkdirsSync(home: string, segments: readonly string[]): Refusal | null {
  let fd = openSync(home, DIR_FLAGS);
  try {
    for (const segment of segments) {
      const at = pinnedPath(fd);
      if (!inside(readlinkSync(at), home)) return 'leaves';
      try {
        mkdirSync(`${at}/${segment}`);
      } catch (e) {
        if ((e as { code?: string }).code !== 'EEXIST') throw e;
      }
      const child = openSync(`${at}/${segment}`, DIR_FLAGS);
      closeSync(fd);
      fd = child;
    }
    return inside(readlinkSync(pinnedPath(fd)), home) ? null : 'leaves';
  } finally {
    closeSync(fd);
  }
}

/**
 * A small file read whole in one hop: resolved and checked as read.ts's openRead does (realpath inside the
 * home, its directory opened and checked through /proc/self/fd, the name opened there without following it).
 */
export function read(m: SmallRead): SmallReadResult {
  const real = realpath(m.path);
  if (!inside(real, m.home)) return { ok: true, refused: 'leaves' };
  if (real === m.home) return { ok: true, refused: 'is_a_directory' };
  const slash = real.lastIndexOf('/');
  const dfd = openSync(real.slice(0, slash) || '/', DIR_FLAGS | O_NOFOLLOW);
  let fd: number;
  try {
    const at = pinnedPath(dfd);
    if (!inside(readlinkSync(at), m.home)) return { ok: true, refused: 'leaves' };
    fd = openSync(`${at}/${real.slice(slash + 1)}`, READ_FLAGS);
  } finally {
    closeSync(dfd);
  }
  try {
    const info = fstatSync(fd);
    const refused = readRefusal(info);
    if (refused !== null) return { ok: true, refused };
    if (info.size > m.max) return { ok: true, large: true };
    const bytes = Buffer.allocUnsafeSlow(info.size);
    let got = 0;
    while (got < info.size) {
      const n = readSync(fd, bytes, got, info.size - got, got);
      if (n === 0) break;
      got += n;
    }
    return { ok: true, size: got, mtimeMs: info.mtimeMs, bytes: bytes.subarray(0, got) };
  } finally {
    closeSync(fd);
  }
}

export function failure(e: unknown): { code?: string; message: string } {
  const code = (e as { code?: unknown } | null)?.code;
  return { ...(typeof code === 'string' ? { code } : {}), message: String((e as Error | null)?.message ?? e) };
}

/** Whether the content has the SHA-256 the job declares (true when it declares none). */
export function verified(m: SmallCommit): boolean {
  if (m.sha256 === undefined) return true;
  const hash = createHash('sha256');
  for (const chunk of m.chunks) hash.update(chunk);
  return hash.digest('hex') === m.sha256;
}

export function commit(m: SmallCommit, dirs: PlacedDirs): SmallCommitResult {
  if (!verified(m)) return { ok: false, stage: 'verify' };
  let stage: 'write' | 'place' = 'write';
  let mtimeMs: number | undefined;
  try {
    mtimeMs = writePartial(m);
    stage = 'place';
    const refused = place(m, dirs);
    return refused === null ? { ok: true, mtimeMs } : { ok: false, stage, refused, mtimeMs };
  } catch (e) {
    if (stage === 'write') {
      try {
        unlinkSync(m.partial);
      } catch {
        // Never made.
      }
    }
    return { ok: false, stage, ...failure(e), ...(mtimeMs !== undefined ? { mtimeMs } : {}) };
  }
}

