import { checkRead } from '../checks.ts';
import { Buffer } from 'node:buffer';
import type { Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FerryError } from '../../core/errors.ts';
import type { ReadHandle } from '../storage.ts';
import { READ_FLAGS, readRefusal } from './confine.ts';
import { fail, refusal } from './errors.ts';
import type { Home } from './home.ts';
import type { SmallCommits } from './lanes.ts';

/** Files up to this size are read whole, in one hop to the commit worker, when they are opened (pinned mode). */
export const SMALL_READ_MAX = 64 * 1024;

/**
 * Opens the file `segments` for reading. Pinned, with the commit worker: a small file is checked, opened and
 * read whole in one hop to the worker; a larger one is then opened here, to be streamed. Otherwise: resolved and
 * confined, its directory opened and checked, the name opened there without following it.
 */
export async function openRead(home: Home, commits: SmallCommits | null, segments: readonly string[], shown: string): Promise<ReadHandle> {
  const verb = 'read';
  const root = await home.real();
  if (home.pinned && commits !== null) {
    const r = await commits.read({ path: join(root, ...segments), home: root, max: SMALL_READ_MAX }).catch(() => null);
    if (r !== null && !r.ok) throw fail(Object.assign(new Error(r.message ?? ''), { code: r.code }), verb, shown);
    if (r?.refused !== undefined) throw refusal(r.refused, verb, shown);
    if (r?.ok && 'bytes' in r) return new HeldReadHandle(Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength), r.mtimeMs, shown);
  }
  const real = await home.resolve(segments, verb, shown);
  if (real === root) throw refusal('is_a_directory', verb, shown);
  const handle = await home.inDir(dirname(real), verb, shown, async (dir) => {
    try {
      return await open(join(dir.at, basename(real)), READ_FLAGS);
    } catch (err) {
      throw fail(err, verb, shown);
    }
  });
  try {
    const info = await handle.stat();
    const refused = readRefusal(info);
    if (refused !== null) throw refusal(refused, verb, shown);
    return new LocalReadHandle(handle, info, shown);
  } catch (err) {
    await handle.close().catch(() => {});
    throw fail(err, verb, shown);
  }
}

/** A file opened for reading, streamed from the disk. */
class LocalReadHandle implements ReadHandle {
  readonly size: number;
  readonly mtime: number;
  #handle: FileHandle | undefined;
  readonly #shown: string;

  constructor(handle: FileHandle, info: Stats, shown: string) {
    this.#handle = handle;
    this.size = info.size;
    this.mtime = Math.floor(info.mtimeMs);
    this.#shown = shown;
  }

  /**
   * Reads up to `length` bytes at `position`. Never reads past the size the file had when opened, so the
   * bytes sent always match the size announced (a file cannot grow through ferry: uploads replace it).
   */
  async read(position: number, length: number): Promise<Buffer> {
    this.#open();
    checkRead(position, length);
    const want = Math.min(length, Math.max(0, this.size - position));
    if (want === 0) return Buffer.alloc(0);
    const buffer = Buffer.allocUnsafeSlow(want);
    const got = await this.readInto(buffer, position);
    // A file that shrank behind our back: copy, so no uninitialised memory rides along.
    return got === want ? buffer : Buffer.from(buffer.subarray(0, got));
  }

  async readInto(target: Buffer, position: number): Promise<number> {
    const handle = this.#open();
    checkRead(position);
    const want = Math.min(target.length, Math.max(0, this.size - position));
    let got = 0;
    try {
      while (got < want) {
        const { bytesRead } = await handle.read(target, got, want - got, position + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (err) {
      throw fail(err, 'read', this.#shown);
    }
    return got;
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }

  #open(): FileHandle {
    if (this.#handle === undefined) throw new FerryError('internal', `Cannot read ${this.#shown}: it is closed`);
    return this.#handle;
  }
}

/** A small file read whole when it was opened (see openRead): reads copy from memory, closing frees it. */
class HeldReadHandle implements ReadHandle {
  readonly size: number;
  readonly mtime: number;
  #bytes: Buffer | undefined;
  readonly #shown: string;

  constructor(bytes: Buffer, mtimeMs: number, shown: string) {
    this.#bytes = bytes;
    this.size = bytes.length;
    this.mtime = Math.floor(mtimeMs);
    this.#shown = shown;
  }

  async read(position: number, length: number): Promise<Buffer> {
    checkRead(position, length);
    const bytes = this.#held(position);
    return Buffer.from(bytes.subarray(position, position + length));
  }

  async readInto(target: Buffer, position: number): Promise<number> {
    return this.#held(position).copy(target, 0, Math.min(position, this.size), Math.min(this.size, position + target.length));
  }

  async close(): Promise<void> {
    this.#bytes = undefined;
  }

  #held(position: number): Buffer {
    if (this.#bytes === undefined) throw new FerryError('internal', `Cannot read ${this.#shown}: it is closed`);
    checkRead(position);
    return this.#bytes;
  }
}

