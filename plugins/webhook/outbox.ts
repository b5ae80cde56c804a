import { Buffer } from 'node:buffer';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { open, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { PluginLogger } from '../../src/plugin/mod.ts';

/** Records read for one delivery, in order. */
export interface OutboxBatch {
  /** Each record's JSON text, exactly as stored. */
  records: string[];
  /** Each record's `id`. */
  ids: string[];
  /** Lines consumed, counting lines that were not a valid record (skipped, with a warning). */
  lines: number;
  /** Byte offset just after the batch: where the next one starts. */
  end: number;
}

/** Once this many delivered bytes sit at the head of the file (and at least half of it), the file is rewritten. */
const COMPACT_BYTES = 1024 * 1024;
const READ_CHUNK = 64 * 1024;
const WRITE_RETRY_MS = 1000;
const MAX_LANDED = 1024;
const NEWLINE = 0x0a;

/** Position of the delivered prefix, kept in `<outbox>.ack` (written after every successful delivery). */
interface Ack {
  /** Byte offset just after the last delivered record. */
  offset: number;
  /** That record's id: the offset is trusted only when the record there still has it. */
  id: string;
}

/**
 * A durable, ordered queue of JSON records in one JSON Lines file, for one endpoint.
 *
 * - `append` returns at once; records written in the same tick (and while a previous write is being synced)
 *   go out in one `write` and one `fdatasync` (group commit). A record counts as queued — `pending`, readable,
 *   `onDurable` called — only once it is on disk.
 * - `read` returns the oldest undelivered records; `ack` marks them delivered: the position is saved in
 *   `<file>.ack`, and the delivered head of the file is dropped (the file is truncated when everything was
 *   delivered, or rewritten once the head is large).
 * - `open` recovers from a crash: a cut-off last line (a write that never completed, so never queued) is
 *   removed, and delivery resumes after the last acknowledged record. When the `.ack` file is missing,
 *   damaged or stale, delivery resumes earlier, never later: records may be sent twice, never skipped.
 *
 * One Outbox object should own a file; all writes, truncations and rewrites run one after the other.
 *
 * @example
 * ```ts
 * const box = await Outbox.open('/data/plugins/webhook/outbox-ops.jsonl', log);
 * box.append(JSON.stringify({ id: randomUUID(), event: 'upload' }));
 * await box.flush();
 * const batch = await box.read(50, 1 << 20);
 * // ... deliver batch.records ...
 * await box.ack(batch);
 * await box.close();
 * ```
 */
export class Outbox {
  readonly file: string;
  readonly ackFile: string;
  /** Called whenever records became durable (to wake a sender). */
  onDurable: (() => void) | null = null;
  #fh: FileHandle;
  readonly #log: PluginLogger;
  #cursor: number;
  #size: number;
  #pending: number;
  /** When each durable write landed (end offset, time), to know how long the oldest pending record waited. */
  #landed: Array<{ end: number; at: number }> = [];
  #queue: string[] = [];
  #chain: Promise<unknown> = Promise.resolve();
  #flushing: Promise<void> | null = null;
  #state: 'open' | 'closing' | 'closed' = 'open';
  #retry: { timer: NodeJS.Timeout; wake: () => void } | null = null;

  private constructor(file: string, fh: FileHandle, log: PluginLogger, size: number, cursor: number, pending: number) {
    this.file = file;
    this.ackFile = `${file}.ack`;
    this.#fh = fh;
    this.#log = log;
    this.#size = size;
    this.#cursor = cursor;
    this.#pending = pending;
    // What was on disk at start has waited long enough: deliver it at once.
    if (pending > 0) this.#landed.push({ end: size, at: 0 });
  }

  /** Opens (or creates) the outbox file, repairing a cut-off last line and finding where delivery resumes. */
  static async open(file: string, log: PluginLogger): Promise<Outbox> {
    const fh = await open(file, 'a+', 0o600);
    try {
      let size = (await fh.stat()).size;
      const whole = await _lastNewline(fh, size);
      if (whole < size) {
        log.warn(`Outbox ${file}: removed a cut-off last line (${size - whole} bytes) left by an interrupted write`);
        await fh.truncate(whole);
        await fh.datasync();
        size = whole;
      }
      const ack = await _readAck(`${file}.ack`);
      let lines = 0;
      let cursor = 0;
      let linesBefore = 0;
      let found = false;
      for await (const { line, end } of _lines(fh, 0, size)) {
        lines++;
        if (ack && !found && line.includes(ack.id) && _idOf(line) === ack.id) {
          found = true;
          cursor = end;
          linesBefore = lines;
        }
      }
      if (ack && !found && size > 0 && ack.offset > 0) {
        // Normal after the file was emptied or rewritten; the file then holds only undelivered records.
        log.info(`Outbox ${file}: last delivered record not in the file; resuming from its start`);
      }
      return new Outbox(file, fh, log, size, cursor, lines - linesBefore);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
  }

  /** Records on disk, not yet delivered. */
  get pending(): number {
    return this.#pending;
  }

  /** Records appended but not yet on disk. */
  get unwritten(): number {
    return this.#queue.length;
  }

  /** When the oldest pending record reached the disk (ms since epoch; 0 for records found at start), or null. */
  get oldestAt(): number | null {
    return this.#pending > 0 ? (this.#landed[0]?.at ?? 0) : null;
  }

  /**
   * Queues one record (a JSON object's text, without a newline). Never waits and never throws: write
   * failures are logged and retried. After `close`, the record is written and synced synchronously.
   */
  append(record: string): void {
    if (this.#state === 'closed') {
      this.#appendSync(`${record}\n`);
      return;
    }
    this.#queue.push(`${record}\n`);
    this.#flushing ??= this.#flushLoop();
  }

  /** Resolves once every record appended before the call is on disk (or could not be written while closing). */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  /** The oldest undelivered records: at most `maxLines` lines and about `maxBytes` bytes (at least one record). */
  async read(maxLines: number, maxBytes: number): Promise<OutboxBatch> {
    const batch: OutboxBatch = { records: [], ids: [], lines: 0, end: this.#cursor };
    let bytes = 0;
    for await (const { line, end } of _lines(this.#fh, this.#cursor, this.#size)) {
      if (batch.lines >= maxLines || (batch.records.length > 0 && bytes + line.length + 1 > maxBytes)) break;
      batch.lines++;
      batch.end = end;
      const text = line.toString('utf8');
      const id = _idOf(line);
      if (id === null) {
        this.#log.warn(`Outbox ${this.file}: skipped a damaged line at byte ${end - line.length - 1}: ${JSON.stringify(text.slice(0, 80))}`);
        continue;
      }
      batch.records.push(text);
      batch.ids.push(id);
      bytes += line.length + 1;
    }
    return batch;
  }

  /** Marks a batch from `read` delivered: saves the position, then drops the delivered head when worth it. */
  async ack(batch: OutboxBatch): Promise<void> {
    if (batch.lines === 0) return;
    this.#cursor = batch.end;
    this.#pending -= batch.lines;
    while (this.#landed.length > 0 && (this.#landed[0]?.end ?? 0) <= this.#cursor) this.#landed.shift();
    const lastId = batch.ids.at(-1);
    await this.#exclusive(async () => {
      if (lastId !== undefined) await _writeAck(this.ackFile, { offset: batch.end, id: lastId });
      if (this.#cursor === this.#size) {
        // Everything on disk was delivered: start the file afresh (the .ack then points past its end).
        await this.#fh.truncate(0);
        this.#size = 0;
        this.#cursor = 0;
        this.#landed = [];
      } else if (this.#cursor >= COMPACT_BYTES && this.#cursor * 2 >= this.#size) {
        await this.#compact();
      }
    });
  }

  /** Writes what is queued, then closes the file. Later `append`s write synchronously. */
  async close(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    this.#retry?.wake();
    await this.flush();
    await this.#chain.catch(() => {});
    this.#state = 'closed';
    // Anything appended while the last write was under way and left behind goes out synchronously.
    const left = this.#queue.splice(0);
    if (left.length > 0) this.#appendSync(left.join(''));
    await this.#fh.close().catch(() => {});
  }

  #exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(op, op);
    this.#chain = run.catch(() => {});
    return run;
  }

  async #flushLoop(): Promise<void> {
    // Let the events of this tick join the same write.
    await new Promise<void>((r) => setImmediate(r));
    try {
      while (this.#queue.length > 0) {
        const lines = this.#queue.splice(0);
        try {
          await this.#exclusive(() => this.#write(lines));
        } catch (err) {
          this.#queue.unshift(...lines);
          if (this.#state !== 'open') {
            this.#log.error(`Outbox ${this.file}: cannot write ${this.#queue.length} event(s) while stopping: ${(err as Error).message}; they are lost`);
            this.#queue = [];
            return;
          }
          this.#log.error(`Outbox ${this.file}: cannot write ${this.#queue.length} event(s): ${(err as Error).message}; trying again in ${WRITE_RETRY_MS} ms`);
          await new Promise<void>((wake) => {
            const timer = setTimeout(wake, WRITE_RETRY_MS);
            this.#retry = { timer, wake: () => (clearTimeout(timer), wake()) };
          });
          this.#retry = null;
        }
      }
    } finally {
      this.#flushing = null;
    }
  }

  async #write(lines: string[]): Promise<void> {
    const bytes = Buffer.from(lines.join(''), 'utf8');
    try {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await this.#fh.write(bytes, done, bytes.length - done);
        done += bytesWritten;
      }
      await this.#fh.datasync();
    } catch (err) {
      // Never leave half a write behind: the retry appends the same lines again.
      await this.#fh.truncate(this.#size).catch(() => {});
      throw err;
    }
    this.#size += bytes.length;
    this.#pending += lines.length;
    const last = this.#landed.at(-1);
    // Bounded during long outages: later writes then count as old as the last entry (sent no later).
    if (last && this.#landed.length >= MAX_LANDED) last.end = this.#size;
    else this.#landed.push({ end: this.#size, at: Date.now() });
    this.onDurable?.();
  }

  /** Copies the undelivered tail to a new file and renames it over the outbox. */
  async #compact(): Promise<void> {
    const tmp = `${this.file}.tmp`;
    const out = await open(tmp, 'w', 0o600);
    try {
      const buf = Buffer.alloc(READ_CHUNK);
      for (let pos = this.#cursor; pos < this.#size; ) {
        const { bytesRead } = await this.#fh.read(buf, 0, Math.min(buf.length, this.#size - pos), pos);
        if (bytesRead === 0) throw new Error(`${this.file} is shorter than expected`);
        await out.write(buf, 0, bytesRead);
        pos += bytesRead;
      }
      await out.datasync();
    } finally {
      await out.close();
    }
    await rename(tmp, this.file);
    await _syncDir(dirname(this.file));
    const old = this.#fh;
    this.#fh = await open(this.file, 'a+', 0o600);
    await old.close().catch(() => {});
    const cut = this.#cursor;
    this.#size -= cut;
    this.#cursor = 0;
    this.#landed = this.#landed.map((l) => ({ end: l.end - cut, at: l.at }));
  }

  #appendSync(text: string): void {
    try {
      const fd = openSync(this.file, 'a', 0o600);
      try {
        writeSync(fd, text);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      this.#log.error(`Outbox ${this.file}: cannot write an event after stop: ${(err as Error).message}; it is lost`);
    }
  }
}

/** Each complete line (without its newline) of the byte range, with the offset just after it. A cut-off tail is not returned. */
export async function* _lines(fh: FileHandle, from: number, to: number): AsyncGenerator<{ line: Buffer; end: number }> {
  let pos = from;
  let rest: Buffer = Buffer.alloc(0);
  let restAt = from;
  while (pos < to) {
    const buf = Buffer.alloc(Math.min(READ_CHUNK, to - pos));
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break;
    pos += bytesRead;
    const data = rest.length > 0 ? Buffer.concat([rest, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
    let start = 0;
    for (let nl = data.indexOf(NEWLINE, start); nl !== -1; nl = data.indexOf(NEWLINE, start)) {
      yield { line: data.subarray(start, nl), end: restAt + nl + 1 };
      start = nl + 1;
    }
    rest = data.subarray(start);
    restAt += start;
  }
}

/** The `id` of a stored record, or null when the line is not a JSON object with a string id. */
function _idOf(line: Buffer): string | null {
  try {
    const value = JSON.parse(line.toString('utf8')) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
    const id = (value as { id?: unknown }).id;
    return typeof id === 'string' && id !== '' ? id : null;
  } catch {
    return null;
  }
}

/** Length of the file up to and including its last newline (0 when it has none). */
async function _lastNewline(fh: FileHandle, size: number): Promise<number> {
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - READ_CHUNK);
    const buf = Buffer.alloc(end - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    const nl = buf.subarray(0, bytesRead).lastIndexOf(NEWLINE);
    if (nl !== -1) return start + nl + 1;
    end = start;
  }
  return 0;
}

async function _readAck(file: string): Promise<Ack | null> {
  let text: string;
  try {
    const fh = await open(file, 'r');
    try {
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return null;
  }
  try {
    const value = JSON.parse(text) as Partial<Ack>;
    if (typeof value.offset === 'number' && typeof value.id === 'string' && value.id !== '') return { offset: value.offset, id: value.id };
  } catch {
    // A damaged .ack only means delivery resumes earlier.
  }
  return null;
}

/**
 * Saves the position by writing a new file and renaming it into place. Not synced: losing it to a power
 * cut only makes delivery resume earlier (duplicates, never gaps).
 */
async function _writeAck(file: string, ack: Ack): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, `${JSON.stringify(ack)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

async function _syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Not every platform can sync a directory; the rename is still atomic.
  }
}
