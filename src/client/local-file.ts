import { Buffer } from 'node:buffer';
import { close, closeSync, constants, fstatSync, fsync, openSync, read, readSync, writev, writevSync } from 'node:fs';

/** Files up to this size are read whole, synchronously, as they are opened. */
const SMALL_FILE = 64 * 1024;

/**
 * A local file opened for an upload. A small file is read whole with synchronous calls as it is opened: from
 * the page cache that takes microseconds, where open, stat, read and close through the thread pool cost about
 * 50 µs each, which dominated uploads of many small files. A larger file is read asynchronously from its
 * descriptor. `O_NONBLOCK`, so that a FIFO in an upload tree is refused at once instead of blocking.
 */
export class LocalFile {
  readonly size: number;
  readonly mtimeMs: number;
  #fd: number | null;
  readonly #whole: Buffer | null;
  /** Reads under way: the descriptor is closed only after them, so its number cannot be reused under them. */
  readonly #inflight = new Set<Promise<unknown>>();

  private constructor(fd: number | null, whole: Buffer | null, size: number, mtimeMs: number) {
    this.#fd = fd;
    this.#whole = whole;
    this.size = size;
    this.mtimeMs = mtimeMs;
  }

  /** Opens a regular file; throws for anything else (`not a regular file`) and for the usual fs errors. */
  static async open(path: string): Promise<LocalFile> {
    const fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    try {
      const info = fstatSync(fd);
      if (!info.isFile()) throw new Error(`Cannot upload '${path}': not a regular file`);
      if (info.size > SMALL_FILE) return new LocalFile(fd, null, info.size, info.mtimeMs);
      const whole = Buffer.allocUnsafe(info.size);
      let got = 0;
      while (got < whole.length) {
        const n = readSync(fd, whole, got, whole.length - got, got);
        if (n === 0) break;
        got += n;
      }
      closeSync(fd);
      // A file that shrank between fstat and read: what was read is what is sent (and hashed).
      return new LocalFile(null, got === whole.length ? whole : whole.subarray(0, got), info.size, info.mtimeMs);
    } catch (err) {
      try {
        closeSync(fd);
      } catch {
        // already closed above
      }
      throw err;
    }
  }

  /** Reads like `FileHandle.read`: up to `length` bytes at `position` into `buffer` at `offset`. */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    if (this.#whole) {
      const bytesRead = this.#whole.copy(buffer, offset, position, Math.min(position + length, this.#whole.length));
      return Promise.resolve({ bytesRead: Math.max(0, bytesRead) });
    }
    const fd = this.#fd;
    if (fd === null) return Promise.reject(new Error('The file is closed'));
    return track(this.#inflight, new Promise((resolve, reject) => {
      read(fd, buffer, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead })));
    }));
  }

  /** Closes the file once the reads under way have finished; again is fine. */
  async close(): Promise<void> {
    const fd = this.#fd;
    this.#fd = null;
    if (fd === null) return;
    await Promise.allSettled([...this.#inflight]);
    await new Promise<void>((resolve, reject) => close(fd, (err) => (err ? reject(err) : resolve())));
  }
}

/** Adds `op` to `set` until it settles, and returns it. */
function track<T>(set: Set<Promise<unknown>>, op: Promise<T>): Promise<T> {
  set.add(op);
  const done = (): void => {
    set.delete(op);
  };
  op.then(done, done);
  return op;
}

/**
 * The partial file a download writes (`<name>.ferry-part`), opened (created if missing) with synchronous
 * calls. Once the announced size is known, a small file (up to 64 KiB) is written synchronously too: only
 * the fsync goes through the thread pool. Larger files are written asynchronously, so that the disk and the
 * network overlap.
 */
export class LocalTarget {
  /** Bytes already in the partial when it was opened (0 unless resuming). */
  readonly initialSize: number;
  /** Write synchronously (set once the announced size is known to be small). */
  small = false;
  #fd: number | null;
  /** Operations under way: the descriptor is closed only after them. */
  readonly #inflight = new Set<Promise<unknown>>();

  private constructor(fd: number, initialSize: number) {
    this.#fd = fd;
    this.initialSize = initialSize;
  }

  /** Opens `path` for writing, keeping what is there when `resume`, else emptying it. */
  static open(path: string, resume: boolean): LocalTarget {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | (resume ? 0 : constants.O_TRUNC) | (constants.O_NONBLOCK ?? 0), 0o666);
    try {
      const info = fstatSync(fd);
      if (!info.isFile()) throw new Error(`Cannot write '${path}': not a regular file`);
      return new LocalTarget(fd, info.size);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  static isSmall(size: number): boolean {
    return size <= SMALL_FILE;
  }

  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    const fd = this.#opened();
    return track(this.#inflight, new Promise((resolve, reject) => {
      read(fd, buffer, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead })));
    }));
  }

  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }> {
    const fd = this.#opened();
    if (this.small) return Promise.resolve({ bytesWritten: writevSync(fd, buffers, position) });
    return track(this.#inflight, new Promise((resolve, reject) => {
      writev(fd, buffers, position, (err, bytesWritten) => (err ? reject(err) : resolve({ bytesWritten })));
    }));
  }

  /** fsync: always asynchronous (it waits for the disk). */
  sync(): Promise<void> {
    const fd = this.#opened();
    return track(this.#inflight, new Promise<void>((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve()))));
  }

  /** Closes the file once the operations under way have finished; again is fine. */
  async close(): Promise<void> {
    const fd = this.#fd;
    this.#fd = null;
    if (fd === null) return;
    if (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    closeSync(fd);
  }

  #opened(): number {
    if (this.#fd === null) throw new Error('The file is closed');
    return this.#fd;
  }
}
