/**
 * The commit worker: the code that runs in the worker threads of lanes.ts. Every call here is synchronous — that
 * is the point: the whole commit of a small upload (create the partial, write it, set its time, fsync, close,
 * open its directory and check it is inside the home, check the target, rename or place without replacing,
 * fsync the directory) costs one hop between threads instead of one thread-pool round trip per call.
 *
 * The checks are the ones the event loop makes in pinned mode (home.ts), in the same order, decided by the
 * same functions (confine.ts): the directory is opened (`O_DIRECTORY`), `/proc/self/fd/N` must name a place
 * inside the home, the target is looked up through that descriptor and never followed, a symlink there counts
 * only if it resolves inside the home.
 *
 * A real module: the source (tsx, Deno) starts it from its file, the single executable from the bundle of it
 * that the build embeds (worker-start.ts).
 */
import {
  closeSync, fstatSync, fsyncSync, futimesSync, lstatSync, openSync, readlinkSync, readSync, realpathSync, renameSync, statSync, unlinkSync,
  writeSync, type Stats,
} from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { placeNoReplaceSync } from '../../fs/place.ts';
import { utimeSeconds } from '../../fs/time.ts';
import { DIR_FLAGS, inside, linkRefusal, O_NOFOLLOW, PARTIAL_FLAGS, pinnedPath, READ_FLAGS, readRefusal, targetRefusal, type Refusal } from './confine.ts';
import type { Job, JobMessage, Reply, SmallCommit, SmallCommitResult, SmallRead, SmallReadResult } from './jobs.ts';

const realpath = realpathSync.native;

/** The partial: created (never through a link), written, timed, made durable. Returns its mtime (ms). */
function writePartial(m: SmallCommit): number {
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

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return null;
    throw err;
  }
}

/** What stands at the target, checked as home.ts's checkTarget checks it. */
function targetCheck(target: string, home: string, overwrite: boolean): Refusal | null {
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
 * Into the opened, checked directory. Returns null when placed, or why it was refused. The directory's fsync
 * is left to the end of the batch (one per directory however many files went into it): the directory stays
 * open in `dirs` (its real path -> descriptor) and `synced` records which one the job needs.
 */
function place(m: SmallCommit, dirs: Map<string, number>, synced: Map<SmallCommit, string>): Refusal | null {
  const dfd = openSync(m.dir, DIR_FLAGS);
  let kept = false;
  try {
    const at = pinnedPath(dfd);
    const real = readlinkSync(at);
    if (!inside(real, m.home)) return 'leaves';
    const target = `${at}/${m.name}`;
    const refused = targetCheck(target, m.home, m.overwrite);
    if (refused !== null) return refused;
    // A name that appeared since the check makes the placing fail with EEXIST (the partial is kept).
    if (m.overwrite) renameSync(m.partial, target);
    else placeNoReplaceSync(m.partial, target);
    synced.set(m, real);
    if (!dirs.has(real)) {
      dirs.set(real, dfd);
      kept = true;
    }
    return null;
  } finally {
    if (!kept) closeSync(dfd);
  }
}

/**
 * A small file read whole in one hop: resolved and checked as read.ts's openRead does (realpath inside the
 * home, its directory opened and checked through /proc/self/fd, the name opened there without following it).
 */
function read(m: SmallRead): SmallReadResult {
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

function failure(e: unknown): { code?: string; message: string } {
  const code = (e as { code?: unknown } | null)?.code;
  return { ...(typeof code === 'string' ? { code } : {}), message: String((e as Error | null)?.message ?? e) };
}

function commit(m: SmallCommit, dirs: Map<string, number>, synced: Map<SmallCommit, string>): SmallCommitResult {
  let stage: 'write' | 'place' = 'write';
  let mtimeMs: number | undefined;
  try {
    mtimeMs = writePartial(m);
    stage = 'place';
    const refused = place(m, dirs, synced);
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

/**
 * A batch of jobs: their replies go back together, in one message, after the fsync of each directory that
 * received a file (a reply says "placed" only once the directory entry is durable). A long batch (a slow
 * disk) sends what it has every few milliseconds, so that quick jobs do not wait for the slowest.
 */
function runBatch(jobs: JobMessage['jobs']): void {
  let replies: Reply[] = [];
  let done: Job[] = [];
  let dirs = new Map<string, number>();
  let synced = new Map<SmallCommit, string>();
  let started = performance.now();
  const send = (): void => {
    const failed = new Map<string, { code?: string; message: string }>();
    for (const [real, dfd] of dirs) {
      try {
        fsyncSync(dfd);
      } catch (e) {
        failed.set(real, failure(e));
      }
      try {
        closeSync(dfd);
      } catch {
        // Closed is closed.
      }
    }
    for (let i = 0; i < replies.length; i++) {
      const job = done[i] as Job;
      const dir = job.op === 'read' ? undefined : synced.get(job);
      const why = dir !== undefined ? failed.get(dir) : undefined;
      const r = replies[i] as Reply;
      if (why !== undefined) replies[i] = { id: r.id, ok: false, stage: 'place', ...why, ...('mtimeMs' in r && r.mtimeMs !== undefined ? { mtimeMs: r.mtimeMs } : {}) };
    }
    const transfer: ArrayBuffer[] = [];
    for (const r of replies) if ('bytes' in r && r.bytes) transfer.push(r.bytes.buffer as ArrayBuffer);
    parentPort?.postMessage({ replies }, transfer);
    replies = [];
    done = [];
    dirs = new Map();
    synced = new Map();
    started = performance.now();
  };
  for (const { id, ...job } of jobs) {
    if (job.op === 'read') {
      try {
        replies.push({ id, ...read(job) });
      } catch (e) {
        replies.push({ id, ok: false, ...failure(e) });
      }
    } else {
      replies.push({ id, ...commit(job, dirs, synced) });
    }
    done.push(job);
    if (performance.now() - started > 5) send();
  }
  if (replies.length > 0) send();
}

if (parentPort) {
  parentPort.on('message', ({ jobs }: JobMessage) => runBatch(jobs));
  parentPort.postMessage({ ready: true });
}
