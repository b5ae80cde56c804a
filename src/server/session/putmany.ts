import type { Entry } from '../../core/types.ts';
import { FerryError } from '../../core/errors.ts';
import { escapeText } from '../../core/text.ts';
import { RecordDecoder, type BundleRecord } from '../../protocol/bundle.ts';
import type { ClientMessageOf } from '../../protocol/messages.ts';
import type { BundleResult, BundleSink } from '../../storage/storage.ts';
import { scopeOf } from './files.ts';
import type { Ingress } from './ingress.ts';
import { actorOf, need, Operation } from './operation.ts';
import type { LoggedIn, SessionScope } from './scope.ts';
import { checkSize, claimSpace, refusalOf } from './upload.ts';

/**
 * A bundle's records being stored at once, at most (bytes, records): beyond either, the bundle's data waits,
 * and so (TCP back-pressure) does the client.
 */
const IN_FLIGHT_BYTES = 4 * 1024 * 1024;
const IN_FLIGHT_RECORDS = 256;

interface BundleState {
  user: LoggedIn;
  started: number;
  /** The storage takes the stream whole (Storage.openBundle), or null: the records are decoded and stored here. */
  sink: BundleSink | null;
  decoder: RecordDecoder<'put'>;
  /** Records being stored. */
  inFlight: Set<Promise<void>>;
  inFlightBytes: number;
  stored: number;
  bytes: number;
  failed: number;
  /**
   * The folders records went into, each with the first record stored there: the records after it wait for it,
   * so that a folder the bundle creates is created once, by its first file, and not raced for by all of them.
   */
  folders: Map<string, Promise<void>>;
  /** Records settled beyond the first `through` (which are all settled), by index. */
  settled: Set<number>;
  through: number;
  /** The `through` last told the client (`stored`), and whether telling it again is scheduled. */
  told: number;
  telling: boolean;
  /** The bundle's `ok` (or error) is sent. */
  finished: boolean;
}

/**
 * A session's bundles (`putmany`, feature `bundle`; protocol/bundle.ts): many small files as one stream of
 * records. Each record is a whole upload — the same steps as a `put` (permission, the plugins' veto, the size
 * limit and free space, the storage's checks, the digest, audit and after-hook), stored as soon as it has
 * arrived, many at once, without a reply of its own: a record that is not stored is answered `failed` with its
 * index, and the bundle's `ok` after its `end` counts what was stored. The storage commits a burst of records
 * in one hop (Storage.putWhole), so that a tree of small files costs the server a few large frames and a
 * little work per file.
 */
export class PutBundles {
  readonly #s: SessionScope;
  readonly #ingress: Ingress;
  readonly #active = new Map<number, BundleState>();

  constructor(s: SessionScope, ingress: Ingress) {
    this.#s = s;
    this.#ingress = ingress;
  }

  /** Bundles receiving records (each counts as one transfer toward the per-user limit). */
  get count(): number {
    return this.#active.size;
  }

  owns(id: number): boolean {
    return this.#active.has(id);
  }

  /** PUTMANY: the feature and the upload permission; an error here refuses the whole bundle. */
  async start(id: number, _msg: ClientMessageOf<'putmany'>, user: LoggedIn, started: number): Promise<void> {
    const s = this.#s;
    if (!s.features.includes('bundle')) throw new FerryError('bad_message', "'bundle' was not negotiated in the handshake");
    need(user.account, 'upload');
    const release = await s.reserveTransfer();
    try {
      const { maxMessage, maxData } = s.ctx.options.limits;
      const limits = { maxHeader: maxMessage, maxBody: maxData };
      const scope = scopeOf(s, user);
      const perms = user.account.perms;
      const state: BundleState = {
        user,
        started,
        sink: null,
        decoder: new RecordDecoder('put', limits, (record) => this.#received(id, state, record)),
        inFlight: new Set(),
        inFlightBytes: 0,
        stored: 0,
        bytes: 0,
        failed: 0,
        folders: new Map(),
        settled: new Set(),
        through: 0,
        told: 0,
        telling: false,
        finished: false,
      };
      // Where no plugin listens to uploads (it would be asked about each file first), the storage may take the
      // whole stream (the local driver: in its worker thread); each record is then only reported here.
      if (!new Operation(scope, 'upload', { path: '' }).hooked) {
        state.sink = await user.storage.openBundle({
          ...limits,
          mayOverwrite: perms.has('overwrite'),
          mayCreateParents: perms.has('mkdir'),
          maxFileBytes: s.ctx.options.maxUploadBytes,
          onResult: (r) => this.#stored(id, state, r),
          // A malformed stream ends the connection at once (as a malformed frame does), not at the next write.
          onBroken: (err) => s.transport.fail(err.fatal ? err : s.problem(err, 'putmany')),
        });
      }
      this.#active.set(id, state);
      this.#ingress.track(id, () => settled(state));
    } finally {
      release();
    }
  }

  /** The bundle's bytes: complete records are stored at once; the next bytes wait while too many are. */
  async data(id: number, chunks: Buffer[]): Promise<void> {
    const state = this.#active.get(id);
    if (!state) throw new FerryError('unexpected_message', `Data for request ${id}, which is not a bundle in progress`);
    if (state.sink !== null) {
      let bytes = 0;
      for (const c of chunks) bytes += c.length;
      await claimSpace(this.#s, 'a bundle', bytes);
      return state.sink.write(chunks);
    }
    for (const chunk of chunks) state.decoder.push(chunk);
    while (state.inFlight.size > 0 && (state.inFlightBytes > IN_FLIGHT_BYTES || state.inFlight.size > IN_FLIGHT_RECORDS)) {
      await Promise.race(state.inFlight);
    }
  }

  /** END of the stream: once every record is stored or refused, the bundle's `ok`. */
  end(id: number, msg: ClientMessageOf<'end'>): void {
    const state = this.#active.get(id);
    if (!state) throw new FerryError('unexpected_message', `'end' for request ${id}, which is not a bundle in progress`);
    if (msg.sha256 !== undefined) throw new FerryError('bad_message', "Message 'end' of a bundle has a field 'sha256'");
    if (state.sink === null && !state.decoder.atBoundary) throw new FerryError('bad_message', 'The bundle ends inside a record');
    this.#active.delete(id);
    this.#ingress.commitInBackground(id, null, this.#finish(id, state));
  }

  /** CANCEL: records not yet complete are dropped; the ones being stored finish; then `error cancelled`. */
  cancel(id: number): boolean {
    const state = this.#active.get(id);
    if (!state) return false;
    this.#active.delete(id);
    state.sink?.abort();
    const task = settled(state).then(() => {
      state.finished = true;
      this.#s.transport.send(id, { t: 'error', code: 'cancelled', message: 'Bundle cancelled' });
    });
    this.#ingress.commitInBackground(id, null, task);
    return true;
  }

  /** The connection is gone: records already received are still stored (the session waits for them). */
  close(): void {
    for (const [id, state] of this.#active) {
      state.sink?.abort();
      this.#ingress.commitInBackground(id, null, settled(state).catch(() => {}));
    }
    this.#active.clear();
  }

  #received(id: number, state: BundleState, record: BundleRecord<'put'>): void {
    const index = state.decoder.count - 1;
    const size = record.header.size;
    state.inFlightBytes += size;
    const { path } = record.header;
    const folder = path.slice(0, Math.max(0, path.lastIndexOf('/')));
    const first = state.folders.get(folder);
    const store = first === undefined ? this.#store(id, state, index, record) : first.then(() => this.#store(id, state, index, record));
    if (first === undefined) state.folders.set(folder, store);
    const task: Promise<void> = store.finally(() => {
      state.inFlight.delete(task);
      state.inFlightBytes -= size;
    });
    state.inFlight.add(task);
  }

  /** One record as one upload (see the class). Never throws: a refusal is answered `failed`. */
  async #store(id: number, state: BundleState, index: number, { header, body, digest }: BundleRecord<'put'>): Promise<void> {
    const s = this.#s;
    const { user } = state;
    const { path, size } = header;
    const scope = scopeOf(s, user);
    const op = new Operation(scope, 'upload', { path });
    const sha256 = (digest as Buffer).toString('hex');
    const started = Date.now();
    try {
      op.permit();
      checkSize(s, path, size);
      await claimSpace(s, path, size);
      const perms = user.account.perms;
      const options = {
        // Without the overwrite permission, a file in the way is not replaced.
        overwrite: header.overwrite === true && perms.has('overwrite'),
        parents: header.parents === true,
        mayCreateParents: perms.has('mkdir'),
        ...(header.mtime !== undefined ? { mtime: header.mtime } : {}),
      };
      let entry: Entry;
      if (op.hooked) {
        // A plugin listens: it is told what the file replaces, as for a `put`, so the target is looked at first.
        const upload = await user.storage.createUpload(path, { ...options, size });
        try {
          if (upload.createsParents) op.permit('mkdir');
          await op.vet(() => ({ ...actorOf(scope), path, size, replaces: upload.replaces }));
          await upload.write([body as Buffer]);
          entry = await upload.commit(sha256);
        } catch (err) {
          await upload.abort(false).catch(() => {});
          throw err;
        }
      } else {
        entry = await user.storage.putWhole(path, body as Buffer, { ...options, sha256 });
      }
      op.succeeded({ bytes: entry.size, durationMs: Date.now() - started, sha256 });
      state.stored++;
      state.bytes += entry.size;
      this.#settled(id, state, index);
    } catch (err) {
      this.#refused(id, state, index, path, header.overwrite === true, err, op);
    }
  }

  /** A record the storage stored or refused on its own (Storage.openBundle): audited and answered here. */
  #stored(id: number, state: BundleState, r: BundleResult): void {
    const op = new Operation(scopeOf(this.#s, state.user), 'upload', { path: r.path });
    if (r.error !== undefined) return this.#refused(id, state, r.index, r.path, r.overwriteAsked, r.error, op);
    op.succeeded({ bytes: r.entry.size, durationMs: Date.now() - state.started, sha256: r.sha256 });
    state.stored++;
    state.bytes += r.entry.size;
    this.#settled(id, state, r.index);
  }

  #refused(id: number, state: BundleState, index: number, path: string, overwriteAsked: boolean, err: unknown, op: Operation<'upload'>): void {
    const s = this.#s;
    const ferr = s.problem(refusalOf(err, state.user, path, overwriteAsked), 'putmany');
    op.failed(ferr);
    state.failed++;
    s.transport.send(id, { t: 'failed', index, code: ferr.code, message: ferr.message });
    s.info(`UPLD ${escapeText(path, 200)}: ${ferr.code}: ${ferr.message}`);
    this.#settled(id, state, index);
  }

  /**
   * Record `index` is stored or refused: once the first records are all settled, the client hears so (`stored`),
   * at most once per turn of the event loop. It may then count them done (and a run cut short after that need
   * not send them again).
   */
  #settled(id: number, state: BundleState, index: number): void {
    state.settled.add(index);
    while (state.settled.delete(state.through)) state.through++;
    if (state.through === state.told || state.telling) return;
    state.telling = true;
    setImmediate(() => {
      state.telling = false;
      // After the bundle's `ok` nothing more is said about it (the `ok` settles every record).
      if (state.through === state.told || state.finished || this.#s.stage === 'closed') return;
      state.told = state.through;
      this.#s.transport.send(id, { t: 'stored', count: state.through });
    });
  }

  async #finish(id: number, state: BundleState): Promise<void> {
    await state.sink?.end();
    await settled(state);
    const { stored, bytes, failed } = state;
    state.finished = true;
    this.#s.transport.send(id, { t: 'ok', result: { files: stored, bytes, failed } });
    const ms = Date.now() - state.started;
    this.#s.info(`UPLD ${stored} file(s) as one bundle: received ${bytes} B in ${ms} ms, sha256 verified${failed > 0 ? `; ${failed} refused` : ''}`);
  }
}

/** Resolves once the records received so far are stored or refused. */
function settled(state: BundleState): Promise<void> {
  if (state.sink !== null) return state.sink.settled();
  return Promise.all(state.inFlight).then(() => {});
}
