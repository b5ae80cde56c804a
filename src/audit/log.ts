import { Buffer } from 'node:buffer';
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { asAuditEvent, type AuditEvent } from './event.ts';
import { writeFileAtomic } from '../fs/atomic.ts';
import { placeNoReplaceSync } from '../fs/place.ts';

/** What `AuditLog.append` takes: an event whose `time` is filled in when missing. */
export type AuditEventInput = Omit<AuditEvent, 'time'> & { time?: string };

/** Which events `AuditLog.read` returns. */
export interface AuditReadFilter {
  /** Only this user's events; all users when absent. */
  user?: string;
  /** At most this many, the most recent ones (default 1000). */
  limit?: number;
}

/**
 * Where the audit trail is kept: `<data>/audit.log` (AuditLog, the default) or a shared database (several servers
 * as one: RDLOG on any of them shows the events of all). The same four operations, the same guarantees.
 */
export interface AuditStore {
  append(event: AuditEventInput): Promise<void>;
  read(filter?: AuditReadFilter): Promise<AuditEvent[]>;
  /** Archives the trail and starts a new one with a `log_clear` event by `by`; returns the archive's name. */
  clear(by: string, address: string): Promise<string>;
  close(): Promise<void>;
}

/** Name of the live log inside the data directory. */
export const AUDIT_LOG_FILE = 'audit.log';
/** Folder inside the data directory that holds cleared logs. */
export const AUDIT_ARCHIVE_DIR = 'audit-archive';
const DEFAULT_READ_LIMIT = 1000;

/**
 * The current time as ISO 8601 UTC with microseconds, from the high-resolution clock.
 *
 * @example
 * ```ts
 * auditTime(); // '2026-11-24T07:01:02.123456Z'
 * ```
 */
export function auditTime(): string {
  const micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  const ms = Math.floor(micros / 1000);
  const iso = new Date(ms).toISOString(); // yyyy-mm-ddThh:mm:ss.mmmZ
  return `${iso.slice(0, -1)}${String(micros - ms * 1000).padStart(3, '0')}Z`;
}

/**
 * The audit log of one data directory: `<data>/audit.log`, JSON Lines, one event per line, mode 0600.
 *
 * Operations that write (append, clear, close) run one after the other in call order; each appended
 * line is a single `write` on a file opened for appending, so a crash can cut the last line short but
 * never mixes two lines. Clearing never deletes anything: the old log moves to `<data>/audit-archive/`.
 * One `AuditLog` object should own a data directory (the order guarantees hold within one process).
 *
 * @example
 * ```ts
 * const log = new AuditLog('./ferry-data');
 * await log.append({ event: 'upload', user: 'ann', address: '10.0.0.1:5000', result: 'ok', path: 'a.txt' });
 * const mine = await log.read({ user: 'ann', limit: 50 });
 * const archive = await log.clear('root', '10.0.0.2:6000'); // 'audit-20261124T070102123Z.log'
 * await log.close();
 * ```
 */
export class AuditLog implements AuditStore {
  readonly dataDir: string;
  readonly file: string;
  readonly archiveDir: string;
  #fh: FileHandle | null = null;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** The queued write that takes the lines appended since the last write started (see `append`). */
  #batch: { lines: string[]; written: Promise<void> } | null = null;

  constructor(dataDir: string) {
    this.dataDir = dataDir;
    this.file = join(dataDir, AUDIT_LOG_FILE);
    this.archiveDir = join(dataDir, AUDIT_ARCHIVE_DIR);
  }

  /**
   * Appends one event, filling `time` with `auditTime()` when absent. Resolves once the line is written.
   * Lines appended while an earlier write is under way are written together by the next one (one `write` of
   * whole lines: a busy server makes one file-system call per burst of events, not one per event).
   */
  append(event: AuditEventInput): Promise<void> {
    let batch = this.#batch;
    if (batch === null) {
      const lines: string[] = [];
      const written = this.#enqueue(async () => {
        if (this.#batch?.lines === lines) this.#batch = null; // from now on, appends go to the next write
        if (this.#closed) throw new Error('Cannot append to the audit log: it is closed');
        const fh = await this.#open();
        await _writeAll(fh, lines.length === 1 ? (lines[0] as string) : lines.join(''));
      });
      batch = this.#batch = { lines, written };
    }
    batch.lines.push(_line(event));
    return batch.written;
  }

  /**
   * The last `limit` events (default 1000), oldest first, of one user or of everyone. Lines that are not
   * a valid event (such as a last line cut short by a crash) are skipped. The file is streamed: memory
   * holds only the kept window. Sees every append that was called before it.
   */
  async read(filter: AuditReadFilter = {}): Promise<AuditEvent[]> {
    const limit = Math.floor(filter.limit ?? DEFAULT_READ_LIMIT);
    await this.#tail.catch(() => {});
    if (!(limit > 0)) return [];
    let fh: FileHandle;
    try {
      fh = await open(this.file, 'r');
    } catch (err) {
      if (_code(err) === 'ENOENT') return [];
      throw err;
    }
    const kept = new _Window<AuditEvent>(limit);
    try {
      for await (const line of _lines(fh)) {
        const event = _parse(line);
        if (event && (filter.user === undefined || event.user === filter.user)) kept.push(event);
      }
    } finally {
      await fh.close();
    }
    return kept.toArray();
  }

  /**
   * Archives the current log as `<data>/audit-archive/audit-<YYYYMMDDTHHMMSSmmmZ>.log` and starts a new
   * one whose first entry is a `log_clear` event by `by` from `address`, with `detail` set to the
   * archive's file name. Appends called while the clear runs land in the new log after that entry.
   * Returns the archive's file name.
   *
   * The swap is crash-safe: the archive is made first as a hard link (or an exclusive copy where links
   * are not supported), then the new log replaces the old one by an atomic rename, so at every moment
   * `audit.log` is either the whole old log or the new one.
   */
  clear(by: string, address: string): Promise<string> {
    return this.#enqueue(async () => {
      if (this.#closed) throw new Error('Cannot clear the audit log: it is closed');
      await this.#closeHandle();
      await mkdir(this.archiveDir, { recursive: true, mode: 0o700 });
      const archive = await this.#archive();
      const entry: AuditEvent = { time: auditTime(), event: 'log_clear', user: by, address, result: 'ok', detail: archive };
      await writeFileAtomic(this.file, _line(entry));
      return archive;
    });
  }

  /** Waits for pending writes, then closes the file. Later appends and clears are refused. */
  close(): Promise<void> {
    return this.#enqueue(async () => {
      this.#closed = true;
      await this.#closeHandle();
    });
  }

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    this.#batch = null; // appends after this task (a clear, a close) are written after it, in call order
    const run = this.#tail.then(task, task);
    this.#tail = run.catch(() => {});
    return run;
  }

  async #open(): Promise<FileHandle> {
    if (this.#fh) return this.#fh;
    await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    const fh = await open(this.file, 'a+', 0o600);
    try {
      // A crash may have cut the last line short: end it, so the next event starts on a line of its own.
      const { size } = await fh.stat();
      if (size > 0) {
        const last = Buffer.alloc(1);
        await fh.read(last, 0, 1, size - 1);
        if (last[0] !== 0x0a) await _writeAll(fh, '\n');
      }
    } catch (err) {
      await fh.close();
      throw err;
    }
    this.#fh = fh;
    return fh;
  }

  async #closeHandle(): Promise<void> {
    const fh = this.#fh;
    this.#fh = null;
    await fh?.close();
  }

  /** Copies the live log into the archive folder under a new name (never replacing one) and returns it. */
  async #archive(): Promise<string> {
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('.', '');
    let exists = true;
    try {
      await stat(this.file);
    } catch (err) {
      if (_code(err) !== 'ENOENT') throw err;
      exists = false;
    }
    for (let n = 1; ; n++) {
      const name = n === 1 ? `audit-${stamp}.log` : `audit-${stamp}-${n}.log`;
      const target = join(this.archiveDir, name);
      try {
        if (!exists) await (await open(target, 'wx', 0o600)).close();
        else placeNoReplaceSync(this.file, target, { keepSource: true }); // a second name, or an exclusive copy
        return name;
      } catch (err) {
        if (_code(err) !== 'EEXIST') throw err;
      }
    }
  }
}

function _line(event: AuditEventInput): string {
  const { time, ...rest } = event;
  return `${JSON.stringify({ time: time ?? auditTime(), ...rest })}\n`;
}

async function _writeAll(fh: FileHandle, text: string): Promise<void> {
  const bytes = Buffer.from(text, 'utf8');
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}

/** Longest line `read` considers; anything longer is not an event we wrote and is skipped. */
const _MAX_LINE = 1024 * 1024;

/**
 * The lines of a file (without their line ends), read in chunks; a last line without `\n` is yielded
 * too. A line longer than `_MAX_LINE` is dropped rather than buffered.
 */
async function* _lines(fh: FileHandle): AsyncGenerator<string> {
  const chunk = Buffer.alloc(64 * 1024);
  let carry: Buffer = Buffer.alloc(0);
  let skipping = false;
  for (;;) {
    const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
    if (bytesRead === 0) break;
    const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
    let start = 0;
    for (let nl = data.indexOf(0x0a); nl !== -1; nl = data.indexOf(0x0a, start)) {
      if (!skipping) yield data.toString('utf8', start, nl > start && data[nl - 1] === 0x0d ? nl - 1 : nl);
      skipping = false;
      start = nl + 1;
    }
    carry = Buffer.from(data.subarray(start)); // a copy: `chunk` is reused by the next read
    if (carry.length > _MAX_LINE) {
      carry = Buffer.alloc(0);
      skipping = true;
    }
  }
  if (carry.length > 0 && !skipping) yield carry.toString('utf8');
}

function _parse(line: string): AuditEvent | null {
  if (!line.startsWith('{')) return null;
  try {
    return asAuditEvent(JSON.parse(line));
  } catch {
    return null;
  }
}

function _code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** The last `size` items pushed, in order. */
class _Window<T> {
  readonly #items: T[] = [];
  #start = 0;
  constructor(readonly size: number) {}
  push(item: T): void {
    if (this.#items.length < this.size) {
      this.#items.push(item);
    } else {
      this.#items[this.#start] = item;
      this.#start = (this.#start + 1) % this.size;
    }
  }
  toArray(): T[] {
    return [...this.#items.slice(this.#start), ...this.#items.slice(0, this.#start)];
  }
}
