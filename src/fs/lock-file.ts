import { randomBytes } from 'node:crypto';
import { closeSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import process from 'node:process';
import { errnoOf } from './place.ts';

/** What a lock file holds: who took it, when, and a nonce that tells one taking of it from another. */
export interface LockHolder {
  pid: number;
  /** When it was taken, ms since the epoch. */
  time: number;
  nonce: string;
}

export interface LockFileOptions {
  /**
   * A lock older than this is taken over even when its process seems alive (a process that hung, or a pid
   * reused). Leave it out for locks held for as long as a run lasts (a batch journal): then only a lock whose
   * process is gone is taken over.
   */
  staleMs?: number;
}

/** A lock whose content cannot be read yet may be being written: it is judged by age only after this long. */
const UNREADABLE_GRACE_MS = 2000;

/**
 * A cross-process lock: the file `path` created exclusively, holding `{ pid, time, nonce }` as JSON. The one
 * lock-file implementation (the users file, a batch journal).
 *
 * - `tryAcquire` takes it at once or says who holds it; `acquire` waits for it, up to a time limit.
 * - A lock left behind is taken over: its process is gone (checked with signal 0), or it is older than
 *   `staleMs`. The take-over moves the lock aside and checks that it moved the very lock it judged (by nonce);
 *   if another process took the stale lock over first and made a fresh one, that fresh lock is put back.
 * - `release` removes the lock only if it is still this one (it may have been taken over as stale).
 * - A lock in the older one-line form (`<pid>\n`) is understood too.
 *
 * @example
 * ```ts
 * const lock = new LockFile('/data/users.json.lock', { staleMs: 30_000 });
 * if (!(await lock.acquire(10_000))) throw new Error(`busy: held by process ${lock.holder()?.pid}`);
 * try { ... } finally { lock.release(); }
 * ```
 */
export class LockFile {
  readonly path: string;
  readonly #staleMs: number | undefined;
  #mine: LockHolder | null = null;

  constructor(path: string, options: LockFileOptions = {}) {
    this.path = path;
    this.#staleMs = options.staleMs;
  }

  /** Whether this object holds the lock now. */
  get held(): boolean {
    return this.#mine !== null;
  }

  /** Takes the lock if it is free or left behind; false when a live holder has it (see `holder`). */
  tryAcquire(): boolean {
    if (this.#mine) return true;
    for (let attempt = 0; attempt < 3; attempt++) {
      const mine: LockHolder = { pid: process.pid, time: Date.now(), nonce: randomBytes(8).toString('hex') };
      if (this.#create(mine)) {
        this.#mine = mine;
        return true;
      }
      if (!this.#breakIfStale()) return false;
    }
    return false;
  }

  /** Takes the lock, waiting up to `timeoutMs` for a live holder to let go; false if it did not. */
  async acquire(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.tryAcquire()) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 40));
    }
  }

  /** Who holds the lock now, as far as the file says; null when there is none (or it cannot be read). */
  holder(): LockHolder | null {
    return readHolder(this.path);
  }

  /** Lets go of the lock, if this object still holds it. */
  release(): void {
    const mine = this.#mine;
    this.#mine = null;
    if (mine === null) return;
    if (readHolder(this.path)?.nonce !== mine.nonce) return; // taken over meanwhile: not ours to remove
    try {
      unlinkSync(this.path);
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw err;
    }
  }

  #create(holder: LockHolder): boolean {
    let fd: number;
    try {
      fd = openSync(this.path, 'wx', 0o600);
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') return false;
      throw new Error(`Cannot create lock file '${this.path}': ${(err as Error).message}`);
    }
    try {
      writeSync(fd, JSON.stringify(holder));
    } catch (err) {
      closeSync(fd);
      try {
        unlinkSync(this.path);
      } catch {
        // Nothing more to do: the error below says what went wrong.
      }
      throw err;
    }
    closeSync(fd);
    return true;
  }

  /** Removes the lock file if it was left behind; true when it is gone (try again at once). */
  #breakIfStale(): boolean {
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.path).mtimeMs;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return true;
      throw err;
    }
    const judged = readHolder(this.path);
    const age = Date.now() - (judged?.time ?? mtimeMs);
    const stale =
      judged === null
        ? age > Math.max(UNREADABLE_GRACE_MS, this.#staleMs ?? 0)
        : !isAlive(judged.pid) || (this.#staleMs !== undefined && age > this.#staleMs);
    if (!stale) return false;
    const aside = `${this.path}.stale-${randomBytes(6).toString('hex')}`;
    try {
      renameSync(this.path, aside);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return true;
      throw err;
    }
    const moved = readHolder(aside);
    if (judged !== null && moved !== null && moved.nonce !== judged.nonce) {
      // Not the lock we judged: put it back (the link fails if yet another lock appeared meanwhile).
      try {
        linkSync(aside, this.path);
      } catch {
        // That newer lock stands.
      }
    }
    try {
      unlinkSync(aside);
    } catch {
      // Gone already.
    }
    return true;
  }
}

function readHolder(path: string): LockHolder | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  if (/^\s*\d+\s*$/.test(text)) {
    // The older form: a process id alone. Its time is the file's.
    try {
      return { pid: Number.parseInt(text, 10), time: statSync(path).mtimeMs, nonce: `pid-${text.trim()}` };
    } catch {
      return null;
    }
  }
  try {
    const data = JSON.parse(text) as Partial<LockHolder> | null;
    if (data && typeof data.pid === 'number' && typeof data.time === 'number' && typeof data.nonce === 'string') {
      return { pid: data.pid, time: data.time, nonce: data.nonce };
    }
  } catch {
    // Not (yet) whole JSON.
  }
  return null;
}

/** Whether a process with this id exists (EPERM: it does, but is not ours to signal). */
function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // Anything but "no such process": assume alive, and let the age decide.
    return errnoOf(err) !== 'ESRCH';
  }
}
