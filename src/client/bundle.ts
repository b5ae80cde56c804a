import { Buffer } from 'node:buffer';
import { closeSync, constants, fstatSync, fsyncSync, futimesSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { FerryError } from '../core/errors.ts';
import { placeNoReplaceSync } from '../fs/place.ts';
import { utimeSeconds } from '../fs/time.ts';
import { DEFAULT_LIMITS } from '../protocol/frame.ts';
import { encodeRecordHeader, RecordDecoder, type BundleRecord } from '../protocol/bundle.ts';
import { parseResult, type Results } from '../protocol/results.ts';
import { FramePacker } from '../transport/packer.ts';
import { remoteError, type Incoming } from './mux.ts';
import { TooLargeForBundle, type TransferLink } from './transfer.ts';

/** DATA frames of a bundle carry at most this many bytes. */
const FRAME = 512 * 1024;
/** Files read (or written) between two turns of the event loop, at most, so that replies and other transfers go on. */
const FILES_PER_TURN = 64;

/** One file of an upload bundle. */
export interface BundlePut {
  local: string;
  remote: string;
  overwrite?: boolean;
  parents?: boolean;
}

/** One file of a download bundle (its local folder must exist). */
export interface BundleGet {
  remote: string;
  local: string;
  overwrite?: boolean;
}

/** What a bundle reports about each of its files, by its index in the list given. */
export interface BundleHooks {
  /** The file is stored and verified (an upload bundle knows it once the server says so: `stored`, or its `ok`). */
  onDone?(index: number, file: { size: number; sha256: string; mtime: number }): void;
  /** The file was not moved: a local error, the server's refusal, or a `TooLargeForBundle`. */
  onFailed?(index: number, err: unknown): void;
  /** Bytes of files read and sent, or received and written, so far (for progress). */
  onBytes?(bytes: number): void;
}

export type BundleResult = Results['putmany'];

/**
 * Uploads many small files as one stream of records (feature `bundle`, protocol/bundle.ts): each file is read
 * whole with synchronous calls (from the page cache that is microseconds, where the thread pool costs tens per
 * call), hashed, and packed with the others into large DATA frames; the server stores each as a whole upload
 * and answers only the ones it refuses. Every file is verified end to end by its SHA-256 as with `put`.
 * Resolves with the server's count after its `ok`; throws when the bundle as a whole fails (the connection,
 * the permission), in which case files not reported through the hooks may or may not have been stored.
 */
export async function putMany(link: TransferLink, items: readonly BundlePut[], hooks: BundleHooks = {}): Promise<BundleResult> {
  const { mux, wire } = link;
  const maxBody = link.welcome?.maxData ?? DEFAULT_LIMITS.maxData;
  const { id, box } = mux.open();
  const packer = new FramePacker(wire, id, Math.min(maxBody, FRAME));
  const scratch = Buffer.allocUnsafeSlow(Math.min(maxBody, 64 * 1024));
  /** The item index of each record sent, in order (the server's `failed` names records by their place). */
  const sentItems: number[] = [];
  const sent = new Map<number, { size: number; sha256: string; mtime: number }>();
  const failed = new Set<number>();
  let endSent = false;
  let serverDone = false;
  let result: BundleResult | null = null;
  /** Records the server said are settled (`stored`): the ones not failed among them are done. */
  let settled = 0;
  const settle = (count: number): void => {
    if (count < settled || count > sentItems.length) throw new FerryError('unexpected_message', `'stored' for ${count} records, after ${settled} of ${sentItems.length} sent`);
    for (; settled < count; settled++) {
      const index = sentItems[settled] as number;
      if (!failed.has(index)) hooks.onDone?.(index, sent.get(index) as { size: number; sha256: string; mtime: number });
    }
  };
  const onReply = (item: Incoming): void => {
    if (item.kind !== 'msg') throw new FerryError('unexpected_message', 'Data for an upload bundle');
    const msg = item.msg;
    if (msg.t === 'stored') return settle(msg.count);
    if (msg.t === 'failed') {
      const index = sentItems[msg.index];
      if (index === undefined || failed.has(index) || msg.index < settled) {
        throw new FerryError('unexpected_message', `'failed' for record ${msg.index}, which was not sent, or is already settled`);
      }
      failed.add(index);
      hooks.onFailed?.(index, remoteError(msg));
      return;
    }
    serverDone = true;
    if (msg.t === 'error') throw remoteError(msg);
    if (msg.t !== 'ok' || !endSent) throw new FerryError('unexpected_message', `Unexpected '${msg.t}' for an upload bundle`);
    result = parseResult('putmany', msg.result);
  };
  try {
    wire.send(id, { t: 'putmany' });
    for (let i = 0; i < items.length; i++) {
      for (let early = box.poll(); early !== undefined; early = box.poll()) onReply(early);
      const item = items[i] as BundlePut;
      let file: { bytes: Buffer; mtime: number };
      try {
        file = readWhole(item.local, maxBody, scratch);
      } catch (err) {
        failed.add(i);
        hooks.onFailed?.(i, err);
        continue;
      }
      const { bytes, mtime } = file;
      const digest = createHash('sha256').update(bytes).digest();
      const header = encodeRecordHeader('put', { path: item.remote, size: bytes.length, mtime, overwrite: item.overwrite === true, parents: item.parents === true });
      sentItems.push(i);
      sent.set(i, { size: bytes.length, sha256: digest.toString('hex'), mtime });
      const room = [header, bytes, digest].map((part) => packer.write(part)).every(Boolean);
      hooks.onBytes?.(bytes.length);
      if (!room) await wire.drained();
      else if (i % FILES_PER_TURN === FILES_PER_TURN - 1) await nextTurn();
      if (mux.closedWith) throw mux.closedWith;
    }
    if (!packer.flush()) await wire.drained();
    wire.send(id, { t: 'end' });
    endSent = true;
    while (result === null) onReply(await box.next());
    settle(sentItems.length);
    return result;
  } catch (err) {
    if (!endSent && !mux.closedWith) {
      // Refused: release the id on the server. Still running: stop it (the records under way are dropped).
      if (serverDone) wire.send(id, { t: 'cancel' });
      else mux.abandon(id);
    }
    throw err;
  } finally {
    mux.release(id);
  }
}

/**
 * Downloads many small files as one stream (feature `bundle`): the names go out as one stream of `want` records,
 * the files come back as `file` records in any order, each verified by its SHA-256, then written whole with
 * synchronous calls to `<local>.ferry-part`, fsynced, and put in place (replacing a file only with
 * `overwrite`) with the server's time. A file larger than a bundle carries fails with `TooLargeForBundle`.
 */
export async function getMany(link: TransferLink, items: readonly BundleGet[], hooks: BundleHooks = {}): Promise<BundleResult> {
  const { mux, wire } = link;
  const { id, box } = mux.open();
  const seen = new Uint8Array(items.length);
  let endSent = false;
  let serverDone = false;
  const onRecord = ({ header, body, digest }: BundleRecord<'file'>): void => {
    const { index, mtime } = header;
    const item = items[index];
    if (item === undefined || seen[index] !== 0) throw new FerryError('unexpected_message', `A bundle record for file ${index}, which was not asked for or already came`);
    seen[index] = 1;
    const bytes = body as Buffer;
    const sha256 = createHash('sha256').update(bytes).digest();
    if (!sha256.equals(digest as Buffer)) {
      hooks.onFailed?.(index, new FerryError('digest_mismatch', `'${item.remote}' arrived damaged: its SHA-256 differs from the server's`));
      return;
    }
    try {
      writeWhole(item.local, bytes, mtime, item.overwrite === true);
    } catch (err) {
      hooks.onFailed?.(index, err);
      return;
    }
    hooks.onBytes?.(bytes.length);
    hooks.onDone?.(index, { size: bytes.length, sha256: sha256.toString('hex'), mtime });
  };
  const decoder = new RecordDecoder('file', { maxHeader: DEFAULT_LIMITS.maxMessage, maxBody: DEFAULT_LIMITS.maxData }, onRecord);
  const receiving = (async (): Promise<BundleResult> => {
    for (;;) {
      const item = await box.next();
      if (item.kind === 'data') {
        decoder.push(item.chunk);
        continue;
      }
      const msg = item.msg;
      if (msg.t === 'failed') {
        const entry = items[msg.index];
        if (entry === undefined || seen[msg.index] !== 0) throw new FerryError('unexpected_message', `'failed' for file ${msg.index}, which was not asked for or already came`);
        seen[msg.index] = 1;
        const err = remoteError(msg);
        hooks.onFailed?.(msg.index, err.code === 'too_large' ? new TooLargeForBundle(entry.remote, DEFAULT_LIMITS.maxData) : err);
        continue;
      }
      serverDone = true;
      if (msg.t === 'error') throw remoteError(msg);
      if (msg.t !== 'ok' || !endSent) throw new FerryError('unexpected_message', `Unexpected '${msg.t}' for a download bundle`);
      if (!decoder.atBoundary) throw new FerryError('unexpected_message', 'The download bundle ended inside a record');
      return parseResult('getmany', msg.result);
    }
  })();
  receiving.catch(() => {}); // awaited below; an early failure must not be unhandled while the names go out
  try {
    wire.send(id, { t: 'getmany' });
    const packer = new FramePacker(wire, id, FRAME);
    for (const item of items) {
      if (!packer.write(encodeRecordHeader('want', { path: item.remote }))) await wire.drained();
      if (mux.closedWith) throw mux.closedWith;
      if (serverDone) break;
    }
    if (!serverDone) {
      if (!packer.flush()) await wire.drained();
      wire.send(id, { t: 'end' });
      endSent = true;
    }
    return await receiving;
  } catch (err) {
    if (!mux.closedWith && !serverDone) mux.abandon(id);
    else if (!mux.closedWith && !endSent) wire.send(id, { t: 'cancel' });
    throw err;
  } finally {
    mux.release(id);
  }
}

/** A local file read whole (synchronously), for a bundle: at most `max` bytes, into `scratch` when it fits. */
function readWhole(path: string, max: number, scratch: Buffer): { bytes: Buffer; mtime: number } {
  const fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw new Error(`Cannot upload '${path}': not a regular file`);
    if (info.size > max) throw new TooLargeForBundle(path, max);
    const into = info.size <= scratch.length ? scratch : Buffer.allocUnsafe(info.size);
    let got = 0;
    while (got < info.size) {
      const n = readSync(fd, into, got, info.size - got, got);
      if (n === 0) break; // shrank since fstat: what was read is what is sent (and hashed)
      got += n;
    }
    return { bytes: into.subarray(0, got), mtime: Math.floor(info.mtimeMs) };
  } finally {
    closeSync(fd);
  }
}

/**
 * A downloaded file written whole through `<local>.ferry-part` (fsynced, timed), then put in place: replacing
 * what is there only with `overwrite`, else refused with `exists` if something appeared.
 */
function writeWhole(local: string, bytes: Buffer, mtime: number, overwrite: boolean): void {
  const part = `${local}.ferry-part`;
  const fd = openSync(part, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | (constants.O_NONBLOCK ?? 0), 0o666);
  try {
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, done);
    futimesSync(fd, new Date(), utimeSeconds(mtime));
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkQuietly(part);
    throw err;
  }
  closeSync(fd);
  try {
    if (overwrite) renameSync(part, local);
    else placeNoReplaceSync(part, local);
  } catch (err) {
    unlinkQuietly(part);
    if ((err as { code?: string }).code === 'EEXIST') throw new FerryError('exists', `'${local}' exists locally (use overwrite to replace it)`);
    throw err;
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Gone already.
  }
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
