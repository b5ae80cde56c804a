import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import process from 'node:process';
import { LockFile } from '../fs/lock-file.ts';

/** One file that finished (verified) in a run: what its source looked like then, and its digest. */
export interface FileRecord {
  kind: 'put' | 'get';
  /** Local absolute path (put) or remote path (get). */
  src: string;
  /** Remote path (put) or local absolute path (get). */
  dst: string;
  size: number;
  /** Modification time of the source, ms since the epoch. */
  mtime: number;
  sha256: string;
  /** When it finished (ISO 8601). */
  at: string;
}

export interface JournalState {
  /** The latest record per file, by `fileKey`. */
  files: Map<string, FileRecord>;
  /** Non-file operations (mkdir, rename, delete) done in the current, unfinished run. */
  ops: Set<string>;
  /** Lines that could not be read (a line cut short by a crash, say). */
  unreadable: number;
}

/** The key of a transfer in the journal: the same source to the same destination. */
export function fileKey(kind: 'put' | 'get', src: string, dst: string): string {
  return `${kind}\u0000${src}\u0000${dst}`;
}

function isFileRecord(v: Record<string, unknown>): boolean {
  return (
    (v['kind'] === 'put' || v['kind'] === 'get') &&
    typeof v['src'] === 'string' &&
    typeof v['dst'] === 'string' &&
    typeof v['size'] === 'number' &&
    typeof v['mtime'] === 'number' &&
    typeof v['sha256'] === 'string'
  );
}

/**
 * Reads journal text (JSON Lines). A `complete` line ends a run: operations recorded before it are
 * forgotten (the next run does them again), files are kept as evidence of what the destination holds.
 * Unreadable lines — typically the last one, cut short by a crash — are counted and skipped.
 *
 * @example
 * ```ts
 * const state = parseJournal('{"t":"file","kind":"put",...}\n{"t":"fi');
 * state.unreadable; // 1
 * ```
 */
export function parseJournal(text: string): JournalState {
  const files = new Map<string, FileRecord>();
  const ops = new Set<string>();
  let unreadable = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      unreadable++;
      continue;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      unreadable++;
      continue;
    }
    const r = v as Record<string, unknown>;
    if (r['t'] === 'file' && isFileRecord(r)) {
      const rec: FileRecord = {
        kind: r['kind'] as 'put' | 'get',
        src: r['src'] as string,
        dst: r['dst'] as string,
        size: r['size'] as number,
        mtime: r['mtime'] as number,
        sha256: r['sha256'] as string,
        at: typeof r['at'] === 'string' ? r['at'] : '',
      };
      files.set(fileKey(rec.kind, rec.src, rec.dst), rec);
    } else if (r['t'] === 'op' && typeof r['key'] === 'string') {
      ops.add(r['key']);
    } else if (r['t'] === 'complete') {
      ops.clear();
    } else if (r['t'] !== 'run') {
      unreadable++;
    }
  }
  return { files, ops, unreadable };
}

function fileLine(rec: FileRecord): string {
  return JSON.stringify({ t: 'file', ...rec });
}

/**
 * The journal of a batch: `<manifest>.journal` or `--journal PATH`, JSON Lines. Every finished file and
 * operation is appended as one line with one `write` on a file opened for appending, as soon as it is
 * verified, so a killed run leaves at worst a cut-short last line (ignored when read).
 *
 * Opening it takes a lock (`PATH.lock`, fs/lock-file.ts; a lock left by a dead process is taken over) and
 * rewrites the file without unreadable lines. A run that finishes with everything done
 * rewrites it once more with only the files that run saw, and a `complete` line.
 */
export class Journal {
  readonly state: JournalState;
  private fd: number | null = null;
  private readonly seen = new Set<string>();
  /** Set when a write failed: the run goes on without a journal, and says so once. */
  writeError: Error | null = null;

  private constructor(
    readonly path: string,
    state: JournalState,
    private readonly lock: LockFile | null,
  ) {
    this.state = state;
  }

  /** Reads the journal without locking or writing (for --dry-run). */
  static peek(path: string): Journal {
    return new Journal(path, readState(path), null);
  }

  /** Locks, reads and compacts the journal, and opens it for appending. */
  static open(path: string): Journal {
    const lock = new LockFile(`${path}.lock`);
    if (!lock.tryAcquire()) {
      const pid = lock.holder()?.pid;
      throw new Error(`Cannot use the journal '${path}': another ferry batch${pid ? ` (process ${pid})` : ''} is using it`);
    }
    try {
      const state = readState(path);
      const lines = [JSON.stringify({ t: 'run', started: new Date().toISOString(), pid: process.pid })];
      for (const rec of state.files.values()) lines.push(fileLine(rec));
      for (const key of state.ops) lines.push(JSON.stringify({ t: 'op', key }));
      writeAtomically(path, lines);
      const journal = new Journal(path, state, lock);
      journal.fd = openSync(path, 'a');
      return journal;
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  file(kind: 'put' | 'get', src: string, dst: string): FileRecord | undefined {
    return this.state.files.get(fileKey(kind, src, dst));
  }

  opDone(key: string): boolean {
    return this.state.ops.has(key);
  }

  /** Keeps a file's record when the run ends complete (it was skipped because it is still done). */
  keep(kind: 'put' | 'get', src: string, dst: string): void {
    this.seen.add(fileKey(kind, src, dst));
  }

  recordFile(rec: Omit<FileRecord, 'at'>): void {
    const full: FileRecord = { ...rec, at: new Date().toISOString() };
    const key = fileKey(rec.kind, rec.src, rec.dst);
    this.state.files.set(key, full);
    this.seen.add(key);
    this.append(fileLine(full));
  }

  recordOp(key: string): void {
    this.state.ops.add(key);
    this.append(JSON.stringify({ t: 'op', key, at: new Date().toISOString() }));
  }

  private append(line: string): void {
    if (this.fd === null || this.writeError) return;
    try {
      writeSync(this.fd, `${line}\n`);
    } catch (err) {
      this.writeError = err as Error;
    }
  }

  /**
   * Flushes and closes. `complete`: every operation of the run succeeded, so the journal is rewritten
   * with the files this run saw and a `complete` line (the next run starts afresh for mkdir, rename and
   * delete, and the journal does not grow from night to night).
   */
  close(complete: boolean): void {
    if (this.fd !== null) {
      try {
        fsyncSync(this.fd);
      } catch {
        // Best effort: the lines are in the page cache already.
      }
      closeSync(this.fd);
      this.fd = null;
      if (complete && !this.writeError) {
        try {
          const lines = [...this.seen].flatMap((k) => {
            const rec = this.state.files.get(k);
            return rec ? [fileLine(rec)] : [];
          });
          lines.push(JSON.stringify({ t: 'complete', at: new Date().toISOString() }));
          writeAtomically(this.path, lines);
        } catch (err) {
          this.writeError = err as Error;
        }
      }
    }
    this.lock?.release();
  }
}

function readState(path: string): JournalState {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { files: new Map(), ops: new Set(), unreadable: 0 };
    throw new Error(`Cannot read the journal '${path}': ${(err as Error).message}`);
  }
  return parseJournal(text);
}

function writeAtomically(path: string, lines: string[]): void {
  const temp = `${path}.${process.pid}.tmp`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, lines.map((l) => `${l}\n`).join(''));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}
