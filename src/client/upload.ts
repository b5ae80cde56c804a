import { createHash } from 'node:crypto';
import { FerryError } from '../core/errors.ts';
import { DEFAULT_LIMITS, HEADER_SIZE } from '../protocol/frame.ts';
import { parseResult } from '../protocol/results.ts';
import { settled } from '../transport/streams.ts';
import { LocalFile } from './local-file.ts';
import { remoteError, type Incoming } from './mux.ts';
import { hashPrefix, UnexpectedDigestError, type TransferLink, type TransferProgress, type TransferResult } from './transfer.ts';

/** Uploads at least this big ask the server for a partial to resume unless told otherwise. */
export const AUTO_RESUME_BYTES = 1024 * 1024;
const READ_CHUNK = 512 * 1024;

export interface UploadOptions {
  overwrite?: boolean;
  parents?: boolean;
  /** Ask for a partial left by an interrupted upload (default: for files of 1 MiB and more). */
  resume?: boolean;
  onProgress?: (p: TransferProgress) => void;
  /** Use a negotiated wire encoding when the file looks worth it (default true). */
  encode?: boolean;
  /**
   * The SHA-256 (hex) the file must have: if the bytes read differ, the upload is cancelled before its `end`, so
   * nothing becomes visible on the server, and it fails with an `UnexpectedDigestError`.
   */
  expectSha256?: string;
}

/** Picks the wire encoding for an upload from the file's name and first bytes, or null. */
async function chooseEncoding(link: TransferLink, file: LocalFile, path: string, size: number): Promise<string | null> {
  const name = link.agreedEncodings[0];
  if (!name || size === 0) return null;
  const sample = Buffer.allocUnsafe(Math.min(size, 64 * 1024));
  const { bytesRead } = await file.read(sample, 0, sample.length, 0);
  return link.worthEncoding(path, sample.subarray(0, bytesRead)) ? name : null;
}

/**
 * Uploads a local file. The server keeps it invisible until size and SHA-256 match; an interrupted upload leaves a
 * partial on the server that a later upload of the same path and size resumes after both sides agree on the
 * SHA-256 of the part already there.
 */
export async function uploadFile(link: TransferLink, localPath: string, remotePath: string, options: UploadOptions = {}): Promise<TransferResult> {
  const started = Date.now();
  const { mux, wire } = link;
  const file = await LocalFile.open(localPath);
  try {
    const size = file.size;
    const canResume = link.welcome?.features.includes('resume') === true;
    const resume = canResume && (options.resume ?? size >= AUTO_RESUME_BYTES);
    const encoding = options.encode === false ? null : await chooseEncoding(link, file, localPath, size);
    const { id, box } = mux.open();
    let endSent = false;
    let serverDone = false;
    /** The next reply for this upload; an `ok` or `error` is the server's final word on it. */
    const settle = (item: Incoming): void => {
      serverDone = true;
      if (item.kind === 'msg' && item.msg.t === 'error') throw remoteError(item.msg);
      if (!(item.kind === 'msg' && item.msg.t === 'ok') || !endSent) {
        throw new FerryError('unexpected_message', 'Unexpected reply to an upload');
      }
      parseResult('put', item.msg.result);
    };
    try {
      wire.send(id, {
        t: 'put',
        path: remotePath,
        size,
        mtime: Math.floor(file.mtimeMs),
        overwrite: options.overwrite === true,
        parents: options.parents === true,
        resume,
        ...(encoding ? { encoding } : {}),
      });
      let hash = createHash('sha256');
      let position = 0;
      if (resume) {
        const item = await box.next();
        if (!(item.kind === 'msg' && item.msg.t === 'resume')) settle(item);
        const offer = item.kind === 'msg' && item.msg.t === 'resume' ? item.msg : { offset: 0, sha256: '' };
        if (offer.offset > 0 && offer.offset <= size) {
          const local = await hashPrefix(file, offer.offset, READ_CHUNK);
          if (local.digest === offer.sha256) {
            hash = local.hash;
            position = offer.offset;
          }
        }
        wire.send(id, { t: 'from', offset: position });
      }
      const resumedFrom = position;
      const frame = Math.min(link.welcome?.maxData ?? DEFAULT_LIMITS.maxData, READ_CHUNK);
      let wireBytes = 0;
      /** Sends wire bytes as DATA frames; false when the socket buffer is full. */
      const sendFrames = (bytes: Buffer): boolean => {
        let ok = true;
        for (let at = 0; at < bytes.length; at += frame) ok = wire.sendData(id, bytes.subarray(at, at + frame));
        wireBytes += bytes.length;
        return ok;
      };
      const encoder = encoding ? link.encoder(encoding) : null;
      if (encoding && !encoder) throw new Error(`No encoder for '${encoding}'`);
      let encoderEnded: Promise<unknown> = Promise.resolve();
      if (encoder) {
        encoder.on('data', (out: Buffer) => {
          if (!sendFrames(out)) {
            encoder.pause();
            void wire.drained().then(() => encoder.resume());
          }
        });
        encoderEnded = settled(encoder, 'end');
      }
      try {
        options.onProgress?.({ done: position, total: size });
        // One read ahead: the next chunk comes off the disk while this one is hashed, encrypted and sent. Chunks
        // are read after HEADER_SIZE free bytes, so that a chunk that fits one frame is sent as one buffer, and the
        // buffers come back for the next reads once the socket is done with them (fewer allocations of 512 KiB,
        // less garbage collection).
        const spare: Buffer[] = [];
        const readAt = (at: number): Promise<{ buf: Buffer; chunk: Buffer }> => {
          const want = Math.min(READ_CHUNK, size - at);
          // Sized for the file: a small file must not cost (and make the GC chase) a 512 KiB buffer.
          const buf = spare.pop() ?? Buffer.allocUnsafeSlow(HEADER_SIZE + Math.min(READ_CHUNK, size));
          const read = file.read(buf, HEADER_SIZE, want, at).then(({ bytesRead }) => ({ buf, chunk: buf.subarray(HEADER_SIZE, HEADER_SIZE + bytesRead) }));
          read.catch(() => {}); // awaited below; never an unhandled rejection if the loop ends early
          return read;
        };
        let ahead: Promise<{ buf: Buffer; chunk: Buffer }> | null = position < size ? readAt(position) : null;
        while (position < size) {
          const early = box.poll();
          if (early) settle(early);
          const { buf, chunk } = await (ahead as Promise<{ buf: Buffer; chunk: Buffer }>);
          const bytesRead = chunk.length;
          if (bytesRead === 0) throw new Error(`'${localPath}' shrank while it was being uploaded`);
          ahead = position + bytesRead < size ? readAt(position + bytesRead) : null;
          hash.update(chunk);
          if (encoder) {
            // The encoder may hold the chunk after write() returns: its buffer is not reused.
            if (!encoder.write(chunk)) await settled(encoder, 'drain');
          } else if (bytesRead <= frame) {
            wireBytes += bytesRead;
            const reuse = () => void (spare.length < 4 && spare.push(buf));
            if (!wire.sendFrame(id, buf.subarray(0, HEADER_SIZE + bytesRead), reuse)) await wire.drained();
          } else if (!sendFrames(chunk)) {
            await wire.drained();
          }
          position += bytesRead;
          options.onProgress?.({ done: position, total: size });
          if (mux.closedWith) throw mux.closedWith;
        }
        if (encoder) {
          encoder.end();
          await encoderEnded;
        }
      } finally {
        encoder?.destroy();
      }
      const sha256 = hash.digest('hex');
      if (options.expectSha256 !== undefined && sha256 !== options.expectSha256.toLowerCase()) {
        throw new UnexpectedDigestError(localPath, sha256, options.expectSha256.toLowerCase());
      }
      wire.send(id, { t: 'end', sha256 });
      endSent = true;
      settle(await box.next());
      return { size, sha256, resumedFrom, durationMs: Date.now() - started, wireBytes, encoding };
    } catch (err) {
      if (!endSent && !mux.closedWith) {
        // Refused: release the id on the server. Still running: stop it.
        if (serverDone) wire.send(id, { t: 'cancel' });
        else mux.abandon(id);
      }
      throw err;
    } finally {
      mux.release(id);
    }
  } finally {
    await file.close();
  }
}
