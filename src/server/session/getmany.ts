import { createHash } from 'node:crypto';
import { FerryError } from '../../core/errors.ts';
import { quotePath } from '../../core/paths.ts';
import { escapeText } from '../../core/text.ts';
import { DEFAULT_LIMITS, FrameKind, HEADER_SIZE, writeHeader } from '../../protocol/frame.ts';
import { encodeRecordHeader, RecordDecoder, type BundleRecord } from '../../protocol/bundle.ts';
import type { ClientMessageOf } from '../../protocol/messages.ts';
import type { BundleReadResult, BundleSink } from '../../storage/storage.ts';
import { FramePacker } from '../../transport/packer.ts';
import { scopeOf } from './files.ts';
import type { Ingress } from './ingress.ts';
import { actorOf, need, Operation } from './operation.ts';
import type { LoggedIn, SessionScope } from './scope.ts';

/** Files of a bundle being read at once, at most; the wanted names after them wait. */
const IN_FLIGHT = 256;
/** Bytes of the files being read at once, at most. */
const IN_FLIGHT_BYTES = 16 * 1024 * 1024;
/** DATA frames of a bundle carry at most this many bytes (the client's fixed limit is 1 MiB). */
const FRAME = 512 * 1024;
/**
 * The largest file a bundle carries: the client's own limit on a record (its maxData, fixed and not announced).
 * A larger one is answered `failed` with `too_large`: the client fetches it with `get`.
 */
const MAX_RECORD = DEFAULT_LIMITS.maxData;

interface GetState {
  user: LoggedIn;
  started: number;
  /** The storage reads the whole bundle (Storage.openBundleRead), or null: the files are opened and read here. */
  source: BundleSink | null;
  decoder: RecordDecoder<'want'>;
  packer: FramePacker;
  inFlight: Set<Promise<void>>;
  inFlightBytes: number;
  /** Files read or refused since the last `settle` began (see the ingress's `track`). */
  sent: number;
  bytes: number;
  failed: number;
  cancelled: boolean;
}

/**
 * A session's download bundles (`getmany`, feature `bundle`; protocol/bundle.ts): the client names many files in
 * one stream of `want` records, and the server answers each with a `file` record (its index, size, time, bytes
 * and SHA-256) in one stream of DATA frames, or with `failed`. Each file goes through a download's steps
 * (permission, the plugins' veto, the storage's checks and read, audit and after-hook); files are read as their
 * names arrive, many at once (small ones in one hop of the storage's worker), and sent as they are read, so the
 * records may come in any order. The `ok` after the client's `end` counts what was sent.
 */
export class GetBundles {
  readonly #s: SessionScope;
  readonly #ingress: Ingress;
  readonly #active = new Map<number, GetState>();
  /** Bundles still sending after their `end`; `bye` waits for them. */
  readonly #finishing = new Set<Promise<void>>();

  constructor(s: SessionScope, ingress: Ingress) {
    this.#s = s;
    this.#ingress = ingress;
  }

  get count(): number {
    return this.#active.size;
  }

  owns(id: number): boolean {
    return this.#active.has(id);
  }

  /** Resolves when every bundle that ended has sent its last record and its `ok`. */
  async finished(): Promise<void> {
    await Promise.all(this.#finishing);
  }

  /** GETMANY: the feature and the download permission; an error here refuses the whole bundle. */
  async start(id: number, _msg: ClientMessageOf<'getmany'>, user: LoggedIn, started: number): Promise<void> {
    const s = this.#s;
    if (!s.features.includes('bundle')) throw new FerryError('bad_message', "'bundle' was not negotiated in the handshake");
    need(user.account, 'download');
    const release = await s.reserveTransfer();
    try {
      const state: GetState = {
        user,
        started,
        decoder: new RecordDecoder('want', { maxHeader: s.ctx.options.limits.maxMessage, maxBody: 0 }, (record) => this.#wanted(id, state, record)),
        source: null,
        packer: new FramePacker(s.transport, id, Math.min(FRAME, s.ctx.options.limits.maxData)),
        inFlight: new Set(),
        inFlightBytes: 0,
        sent: 0,
        bytes: 0,
        failed: 0,
        cancelled: false,
      };
      // Where no plugin listens to downloads (it would be asked about each file first), the storage may read the
      // whole bundle (the local driver: in its worker thread); each file is then only reported here.
      if (!new Operation(scopeOf(s, user), 'download', { path: '' }).hooked) {
        const frame = Math.min(FRAME, s.ctx.options.limits.maxData);
        state.source = await user.storage.openBundleRead({
          maxFileBytes: MAX_RECORD,
          maxHeader: s.ctx.options.limits.maxMessage,
          frame,
          send: (pieces, written) => {
            let room = true;
            for (const piece of pieces) room = this.#sendPiece(id, state, piece, written) && room;
            return room;
          },
          drained: () => s.transport.drained(),
          onResult: (r) => this.#read(id, state, r),
          onBroken: (err) => s.transport.fail(err.fatal ? err : s.problem(err, 'getmany')),
        });
      }
      this.#active.set(id, state);
      // A later request waits until the files named so far are read (a `delete` after a bundle does not take
      // a file away from it), as it waits for a `get` to open its file.
      this.#ingress.track(id, () => settled(state));
    } finally {
      release();
    }
  }

  /** The names of the files wanted; reading waits while too many are being read. */
  async data(id: number, chunks: Buffer[]): Promise<void> {
    const state = this.#active.get(id);
    if (!state) throw new FerryError('unexpected_message', `Data for request ${id}, which is not a bundle in progress`);
    if (state.source !== null) return state.source.write(chunks);
    for (const chunk of chunks) state.decoder.push(chunk);
    while (state.inFlight.size > 0 && (state.inFlight.size > IN_FLIGHT || state.inFlightBytes > IN_FLIGHT_BYTES)) {
      await Promise.race(state.inFlight);
    }
  }

  /** END of the names: once every file is sent or refused, the bundle's `ok`. */
  end(id: number, msg: ClientMessageOf<'end'>): void {
    const state = this.#active.get(id);
    if (!state) throw new FerryError('unexpected_message', `'end' for request ${id}, which is not a bundle in progress`);
    if (msg.sha256 !== undefined) throw new FerryError('bad_message', "Message 'end' of a bundle has a field 'sha256'");
    if (state.source === null && !state.decoder.atBoundary) throw new FerryError('bad_message', 'The bundle ends inside a record');
    this.#active.delete(id);
    this.#ingress.untrack(id);
    // A stream that ended inside a record (the storage says so as it ends) is a protocol violation: fatal.
    const task = this.#finish(id, state).catch((err: unknown) => this.#s.transport.fail(err instanceof Error ? err : new Error(String(err))));
    this.#finishing.add(task);
    void task.finally(() => this.#finishing.delete(task));
  }

  /** CANCEL: nothing more is sent; `error cancelled` once the files being read are done with. */
  cancel(id: number): boolean {
    const state = this.#active.get(id);
    if (!state) return false;
    this.#active.delete(id);
    this.#ingress.untrack(id);
    state.cancelled = true;
    state.source?.abort();
    void settled(state).then(() => this.#s.transport.send(id, { t: 'error', code: 'cancelled', message: 'Bundle cancelled' }));
    return true;
  }

  /** The connection is gone: nothing more is sent. */
  close(): void {
    for (const [id, state] of this.#active) {
      state.cancelled = true;
      state.source?.abort();
      this.#ingress.untrack(id);
    }
    this.#active.clear();
  }

  #wanted(id: number, state: GetState, record: BundleRecord<'want'>): void {
    const index = state.decoder.count - 1;
    const task: Promise<void> = this.#send(id, state, index, record.header.path).finally(() => state.inFlight.delete(task));
    state.inFlight.add(task);
  }

  /** One file as one download (see the class). Never throws: a refusal is answered `failed`. */
  async #send(id: number, state: GetState, index: number, path: string): Promise<void> {
    const s = this.#s;
    const scope = scopeOf(s, state.user);
    const op = new Operation(scope, 'download', { path });
    const started = Date.now();
    let counted = 0;
    try {
      op.permit();
      const handle = await state.user.storage.openRead(path);
      let body: Buffer;
      try {
        if (handle.size > MAX_RECORD) {
          throw new FerryError('too_large', `${quotePath(path)} is ${handle.size} bytes, more than a bundle carries (${MAX_RECORD}): get it on its own`);
        }
        await op.vet(() => ({ ...actorOf(scope), path, size: handle.size, offset: 0 }));
        counted = handle.size;
        state.inFlightBytes += counted;
        body = await handle.read(0, handle.size);
        if (body.length !== handle.size) throw new FerryError('internal', `${quotePath(path)} changed while it was being read`);
      } finally {
        await handle.close().catch(() => {});
      }
      if (state.cancelled || s.transport.isClosed) {
        op.lost('The bundle was cancelled or the connection closed');
        return;
      }
      const digest = createHash('sha256').update(body).digest();
      const { packer } = state;
      const header = encodeRecordHeader('file', { index, size: body.length, mtime: Math.floor(handle.mtime) });
      const room = [header, body, digest].map((part) => packer.write(part)).every(Boolean);
      packer.flushSoon();
      // The transport is full: this file stays in flight until it drains, so that reading waits too.
      if (!room) await s.transport.drained();
      op.succeeded({ bytes: body.length, durationMs: Date.now() - started, sha256: digest.toString('hex') });
      state.sent++;
      state.bytes += body.length;
    } catch (err) {
      const ferr = s.problem(err, 'getmany');
      op.failed(ferr);
      state.failed++;
      if (!state.cancelled) s.transport.send(id, { t: 'failed', index, code: ferr.code, message: ferr.message });
      s.info(`DWLD ${escapeText(path, 200)}: ${ferr.code}: ${ferr.message}`);
    } finally {
      state.inFlightBytes -= counted;
    }
  }

  /** A piece of `file` records packed by the storage, sent as one frame (unless the bundle stopped). */
  #sendPiece(id: number, state: GetState, piece: Buffer, written: (piece: Buffer) => void): boolean {
    const { transport } = this.#s;
    if (state.cancelled || transport.isClosed) return true;
    writeHeader(piece, FrameKind.DATA, id, piece.length - HEADER_SIZE);
    return transport.sendFrame(id, piece, () => written(piece));
  }

  /** A file the storage sent or refused on its own (Storage.openBundleRead): audited and answered here. */
  #read(id: number, state: GetState, r: BundleReadResult): void {
    const s = this.#s;
    const op = new Operation(scopeOf(s, state.user), 'download', { path: r.path });
    if (r.error === undefined) {
      op.succeeded({ bytes: r.size, durationMs: Date.now() - state.started, sha256: r.sha256 });
      state.sent++;
      state.bytes += r.size;
      return;
    }
    const ferr = s.problem(r.error, 'getmany');
    op.failed(ferr);
    state.failed++;
    if (!state.cancelled) s.transport.send(id, { t: 'failed', index: r.index, code: ferr.code, message: ferr.message });
    s.info(`DWLD ${escapeText(r.path, 200)}: ${ferr.code}: ${ferr.message}`);
  }

  async #finish(id: number, state: GetState): Promise<void> {
    await state.source?.end();
    await settled(state);
    const s = this.#s;
    if (state.cancelled || s.transport.isClosed) return;
    if (!state.packer.flush()) await s.transport.drained();
    const { sent, bytes, failed } = state;
    s.transport.send(id, { t: 'ok', result: { files: sent, bytes, failed } });
    s.info(`DWLD ${sent} file(s) as one bundle: sent ${bytes} B in ${Date.now() - state.started} ms${failed > 0 ? `; ${failed} refused` : ''}`);
  }
}

/** Resolves once the files named so far are sent or refused. */
function settled(state: GetState): Promise<void> {
  if (state.source !== null) return state.source.settled();
  return Promise.all(state.inFlight).then(() => {});
}
