import { createHash } from 'node:crypto';
import { FerryError } from '../../core/errors.ts';
import { quotePath } from '../../core/paths.ts';
import { escapeText } from '../../core/text.ts';
import type { ClientMessageOf } from '../../protocol/messages.ts';
import { HEADER_SIZE } from '../../protocol/frame.ts';
import type { EncodedStream } from '../../plugin/types.ts';
import type { ReadHandle } from '../../storage/storage.ts';
import { settled } from '../../transport/streams.ts';
import { scopeOf } from './files.ts';
import { actorOf, Operation } from './operation.ts';
import type { LoggedIn, SessionScope } from './scope.ts';

const READ_CHUNK = 512 * 1024;

interface DownloadState {
  cancelled: boolean;
}

/**
 * A session's downloads: `get` opens the file (checks, the plugins' veto, an encoding), answers `meta`, then the
 * bytes stream in the background, several downloads interleaved, and `end` carries the SHA-256 of the whole file.
 */
export class Downloads {
  readonly #s: SessionScope;
  readonly #active = new Map<number, DownloadState>();
  /** Downloads streaming in the background; `bye` lets them finish first. */
  readonly #streaming = new Set<Promise<void>>();

  constructor(s: SessionScope) {
    this.#s = s;
  }

  get count(): number {
    return this.#active.size;
  }

  owns(id: number): boolean {
    return this.#active.has(id);
  }

  /** Resolves when every download streaming now has finished. */
  async finished(): Promise<void> {
    await Promise.all(this.#streaming);
  }

  /** CANCEL of a download: it stops after the frame under way, and answers `cancelled`. */
  cancel(id: number): void {
    const down = this.#active.get(id);
    if (down) down.cancelled = true;
  }

  /** The connection is gone: every download stops. */
  close(): void {
    for (const d of this.#active.values()) d.cancelled = true;
  }

  /** GET: opens the file and answers `meta`, then streams it in the background (see `#stream`). */
  async get(id: number, msg: ClientMessageOf<'get'>, user: LoggedIn, started: number): Promise<void> {
    const s = this.#s;
    const scope = scopeOf(s, user);
    const op = new Operation(scope, 'download', { path: msg.path });
    let handle: ReadHandle | null = null;
    let encoded: EncodedStream | undefined;
    let release: (() => void) | null = null;
    try {
      op.permit();
      release = await s.reserveTransfer();
      handle = await user.storage.openRead(msg.path);
      const offset = msg.offset ?? 0;
      if (offset > handle.size) {
        throw new FerryError('size_mismatch', `Resume offset ${offset} is past the end of ${quotePath(msg.path)} (${handle.size} bytes)`);
      }
      const opened = handle;
      const described = { ...actorOf(scope), path: msg.path, size: opened.size, offset };
      await op.vet(() => described);
      const accept = (msg.accept ?? []).filter((e) => s.features.includes(`encoding:${e}`));
      if (accept.length > 0 && s.ctx.plugins.has('transfer:encode')) {
        const sample = await opened.read(0, Math.min(opened.size, 64 * 1024));
        encoded = await s.ctx.plugins.first('transfer:encode', { accept, op: described, path: msg.path, sample });
        if (encoded && !accept.includes(encoded.encoding)) throw new FerryError('internal', `A plugin chose encoding ${quotePath(encoded.encoding)}, which the client did not accept`);
      }
      const state: DownloadState = { cancelled: false };
      this.#active.set(id, state);
      release();
      release = null;
      s.transport.send(id, { t: 'meta', size: opened.size, mtime: Math.floor(opened.mtime), ...(encoded ? { encoding: encoded.encoding } : {}) });
      const task = this.#stream(id, op, opened, offset, state, started, encoded?.stream ?? null);
      this.#streaming.add(task);
      void task.finally(() => this.#streaming.delete(task));
    } catch (err) {
      release?.();
      await handle?.close().catch(() => {});
      encoded?.stream.destroy();
      op.failed(err);
      throw err;
    }
  }

  /**
   * Sends a file's bytes from `offset` (hashing it all from 0), through a plugin's encoding stream when there is
   * one, then `end` with the SHA-256 of the whole file.
   */
  async #stream(
    id: number,
    op: Operation<'download'>,
    handle: ReadHandle,
    offset: number,
    state: DownloadState,
    started: number,
    encoder: NodeJS.ReadWriteStream | null,
  ): Promise<void> {
    const { transport } = this.#s;
    const hash = createHash('sha256');
    const frame = Math.min(this.#s.ctx.options.limits.maxData, READ_CHUNK);
    const path = op.path;
    let position = 0;
    let encoderDone: Promise<unknown> = Promise.resolve();
    if (encoder) {
      encoder.on('data', (chunk: Buffer) => {
        for (let at = 0; at < chunk.length; at += frame) {
          if (!transport.sendData(id, chunk.subarray(at, at + frame))) {
            encoder.pause();
            void transport.drained().then(() => encoder.resume());
          }
        }
      });
      encoderDone = settled(encoder as unknown as NodeJS.EventEmitter, 'end');
    }
    /** Sends file bytes, raw or through the encoder; resolves when it is fine to read more. */
    const send = async (bytes: Buffer): Promise<void> => {
      if (encoder) {
        if (!encoder.write(bytes)) await settled(encoder as unknown as NodeJS.EventEmitter, 'drain');
        return;
      }
      let ok = true;
      for (let at = 0; at < bytes.length; at += frame) ok = transport.sendData(id, bytes.subarray(at, at + frame));
      if (!ok) await transport.drained();
    };
    // Chunks are read after HEADER_SIZE free bytes, so that a whole chunk goes out as one buffer (frame header
    // included), and the buffers come back for the next reads once the transport is done with them (fewer
    // allocations of 512 KiB, less garbage collection). Chunks given to an encoder, or sent in part, are not reused.
    const spare: Buffer[] = [];
    try {
      while (position < handle.size && !state.cancelled && !transport.isClosed) {
        // Sized for the file: a small file's download must not hold (and make the GC chase) a 512 KiB buffer.
        const buf = spare.pop() ?? Buffer.allocUnsafeSlow(HEADER_SIZE + Math.min(READ_CHUNK, handle.size));
        const got = await handle.readInto(buf.subarray(HEADER_SIZE, HEADER_SIZE + Math.min(READ_CHUNK, handle.size - position)), position);
        if (got === 0) break;
        const chunk = buf.subarray(HEADER_SIZE, HEADER_SIZE + got);
        hash.update(chunk);
        const from = Math.max(0, offset - position);
        if (from === 0 && !encoder && got <= frame) {
          const reuse = () => void (spare.length < 4 && spare.push(buf));
          if (!transport.sendFrame(id, buf.subarray(0, HEADER_SIZE + got), reuse)) await transport.drained();
        } else if (from < got) {
          await send(from === 0 ? chunk : chunk.subarray(from));
        }
        position += got;
      }
      if (encoder && !state.cancelled && !transport.isClosed) {
        encoder.end();
        await encoderDone;
      }
      if (transport.isClosed) {
        op.lost('The connection closed');
        return;
      }
      if (state.cancelled) {
        transport.send(id, { t: 'error', code: 'cancelled', message: 'Download cancelled' });
        op.failed(new FerryError('cancelled', 'Download cancelled'));
        return;
      }
      if (position !== handle.size) throw new FerryError('internal', `${quotePath(path)} changed while it was being sent`);
      const sha256 = hash.digest('hex');
      transport.send(id, { t: 'end', sha256 });
      const durationMs = Date.now() - started;
      op.succeeded({ bytes: handle.size, durationMs, sha256 });
      this.#s.info(`DWLD ${escapeText(path, 200)}: sent ${handle.size - offset} B in ${durationMs} ms${offset ? ` (resumed at ${offset})` : ''}`);
    } catch (err) {
      const ferr = this.#s.problem(err, 'get');
      transport.send(id, { t: 'error', code: ferr.code, message: ferr.message });
      op.failed(ferr);
    } finally {
      (encoder as unknown as { destroy?: () => void } | null)?.destroy?.();
      this.#active.delete(id);
      await handle.close().catch(() => {});
    }
  }
}
