import { createHash, type Hash } from 'node:crypto';
import { renameSync, utimesSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { FerryError } from '../core/errors.ts';
import { utimeSeconds } from '../fs/time.ts';
import { writevFully } from '../fs/write.ts';
import { settled } from '../transport/streams.ts';
import { LocalTarget } from './local-file.ts';
import { remoteError } from './mux.ts';
import { hashPrefix, UnexpectedDigestError, type TransferLink, type TransferProgress, type TransferResult } from './transfer.ts';

/** What a download writes to until it is verified: `<local path>.ferry-part`. */
export const PARTIAL_SUFFIX = '.ferry-part';
/** Downloaded bytes not yet on disk beyond this pause reading from the server. */
const WRITE_HIGH = 8 * 1024 * 1024;
const READ_CHUNK = 512 * 1024;

export interface DownloadOptions {
  /** Replace an existing local file (default false). */
  overwrite?: boolean;
  /** Continue from `<local>.ferry-part` if present (default true). */
  resume?: boolean;
  onProgress?: (p: TransferProgress) => void;
  /**
   * The SHA-256 (hex) the file must have: if the verified download differs, the partial is deleted, nothing is
   * renamed into place, and it fails with an `UnexpectedDigestError`.
   */
  expectSha256?: string;
}

/** A download error that says whether the download had resumed a partial (then it is worth one fresh try). */
type Resumable = FerryError & { resumed?: boolean };

/**
 * Downloads to `localPath` through `<localPath>.ferry-part`, renamed into place only after the SHA-256 of the
 * whole file matches the server's. A partial left by an interrupted download is resumed; if the result does not
 * verify, the partial is discarded and the file fetched again once.
 */
export async function downloadFile(link: TransferLink, remotePath: string, localPath: string, options: DownloadOptions = {}): Promise<TransferResult> {
  if (!options.overwrite) {
    const existing = await stat(localPath).catch(() => null);
    if (existing) throw new FerryError('exists', `'${localPath}' exists locally (use overwrite to replace it)`);
  }
  try {
    return await downloadOnce(link, remotePath, localPath, options);
  } catch (err) {
    // A resumed download that does not fit or does not verify: the local partial was stale. Start over once.
    if (err instanceof FerryError && (err.code === 'digest_mismatch' || err.code === 'size_mismatch') && (err as Resumable).resumed) {
      await rm(localPath + PARTIAL_SUFFIX, { force: true });
      return downloadOnce(link, remotePath, localPath, { ...options, resume: false });
    }
    throw err;
  }
}

async function downloadOnce(link: TransferLink, remotePath: string, localPath: string, options: DownloadOptions): Promise<TransferResult> {
  const { mux, wire } = link;
  const started = Date.now();
  const partPath = localPath + PARTIAL_SUFFIX;
  const resume = options.resume !== false;
  let offset = 0;
  let hash: Hash = createHash('sha256');
  const file = LocalTarget.open(partPath, resume);
  if (file.initialSize > 0) {
    try {
      hash = (await hashPrefix(file, file.initialSize, READ_CHUNK)).hash;
    } catch (err) {
      await file.close().catch(() => {});
      throw err;
    }
    offset = file.initialSize;
  }
  const { id, box } = mux.open();
  let keepPartial = true;
  let serverDone = false;
  try {
    const accept = link.agreedEncodings;
    wire.send(id, { t: 'get', path: remotePath, offset, ...(accept.length > 0 ? { accept } : {}) });
    const first = await box.next();
    if (!(first.kind === 'msg' && first.msg.t === 'meta')) {
      serverDone = true;
      if (first.kind === 'msg' && first.msg.t === 'error') {
        const err = remoteError(first.msg) as Resumable;
        err.resumed = offset > 0;
        throw err;
      }
      throw new FerryError('unexpected_message', "Expected 'meta' from the server");
    }
    const meta = first.msg;
    file.small = LocalTarget.isSmall(meta.size);
    const encoding = meta.encoding ?? null;
    if (encoding !== null && !accept.includes(encoding)) throw new FerryError('unexpected_message', `The server chose encoding '${encoding}', which was not offered`);
    const decoder = encoding ? link.decoder(encoding) : null;
    let position = offset;
    let wireBytes = 0;
    let unwritten = 0;
    let paused = false;
    let failure: Error | null = null;
    let writing: Promise<void> = Promise.resolve();
    let queued: Buffer[] = [];
    let queuedAt = 0;
    /** Takes file bytes (decoded): hashes, bounds and writes them in order. */
    const consume = (chunk: Buffer): void => {
      if (failure) return;
      hash.update(chunk);
      const at = position;
      position += chunk.length;
      if (position > meta.size) {
        // Also what stops a decompression bomb: never more than the announced size is accepted.
        failure = new FerryError('size_mismatch', `The server sent more than the ${meta.size} bytes it announced`);
        decoder?.destroy();
        return;
      }
      unwritten += chunk.length;
      if (!paused && unwritten > WRITE_HIGH) {
        paused = true;
        wire.pause();
      }
      // Chunks that arrive while a write is in flight are written together by the next writev.
      if (queued.length === 0) queuedAt = at;
      queued.push(chunk);
      if (queued.length > 1) return void options.onProgress?.({ done: position, total: meta.size });
      writing = writing.then(async () => {
        const batch = queued;
        queued = [];
        await writevFully(file, batch, queuedAt);
        for (const b of batch) unwritten -= b.length;
        if (paused && unwritten < WRITE_HIGH / 4) {
          paused = false;
          wire.resume();
        }
      });
      writing.catch(() => {});
      options.onProgress?.({ done: position, total: meta.size });
    };
    let decoderEnded: Promise<unknown> = Promise.resolve();
    if (decoder) {
      decoder.on('data', consume);
      decoder.on('error', (err) => (failure ??= new FerryError('bad_encoding', `Cannot decode the ${encoding} data: ${err.message}`)));
      decoderEnded = settled(decoder, 'end');
    }
    options.onProgress?.({ done: position, total: meta.size });
    try {
      for (;;) {
        const item = await box.next();
        if (failure) throw failure;
        if (item.kind === 'data') {
          wireBytes += item.chunk.length;
          if (!decoder) consume(item.chunk);
          else if (!decoder.write(item.chunk)) await settled(decoder, 'drain');
          if (failure) throw failure;
          continue;
        }
        const msg = item.msg;
        serverDone = msg.t === 'error' || msg.t === 'end';
        if (msg.t === 'error') throw remoteError(msg);
        if (msg.t !== 'end') throw new FerryError('unexpected_message', `Unexpected '${msg.t}' during a download`);
        if (decoder) {
          decoder.end();
          await decoderEnded;
        }
        if (failure) throw failure;
        await writing;
        const digest = hash.digest('hex');
        if (position !== meta.size || digest !== msg.sha256) {
          keepPartial = false;
          const err = new FerryError(
            position !== meta.size ? 'size_mismatch' : 'digest_mismatch',
            `'${remotePath}' did not verify (${position} of ${meta.size} bytes, sha256 ${digest.slice(0, 12)}… vs ${msg.sha256.slice(0, 12)}…); the partial was discarded`,
          ) as Resumable;
          err.resumed = offset > 0;
          throw err;
        }
        if (options.expectSha256 !== undefined && digest !== options.expectSha256.toLowerCase()) {
          keepPartial = false;
          throw new UnexpectedDigestError(remotePath, digest, options.expectSha256.toLowerCase());
        }
        await file.sync();
        await file.close();
        // Local metadata calls: microseconds each, cheaper than a thread-pool round trip.
        renameSync(partPath, localPath);
        try {
          utimesSync(localPath, new Date(), utimeSeconds(meta.mtime));
        } catch {
          // The file is in place; a time that cannot be set is not worth failing for.
        }
        return { size: meta.size, sha256: digest, resumedFrom: offset, durationMs: Date.now() - started, wireBytes, encoding };
      }
    } finally {
      decoder?.destroy();
      if (paused) {
        paused = false;
        wire.resume();
      }
    }
  } catch (err) {
    await file.close().catch(() => {}); // the error that brought us here is the one to report
    // Keep what arrived for a resume when the cause may pass (connection lost, server busy).
    if (err instanceof FerryError && !err.retryable) keepPartial = false;
    if (!keepPartial) await rm(partPath, { force: true });
    if (!serverDone) mux.abandon(id);
    throw err;
  } finally {
    mux.release(id);
  }
}
