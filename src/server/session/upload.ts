import { FerryError } from '../../core/errors.ts';
import { quotePath } from '../../core/paths.ts';
import { escapeText } from '../../core/text.ts';
import type { ClientMessageOf } from '../../protocol/messages.ts';
import type { Upload } from '../../storage/storage.ts';
import { DecodingWriter } from './decoding.ts';
import { scopeOf } from './files.ts';
import type { Ingress } from './ingress.ts';
import { actorOf, need, Operation } from './operation.ts';
import type { LoggedIn, SessionScope } from './scope.ts';

/** Refused uploads whose data frames are still being dropped, at most (a client leaving more is broken). */
const MAX_REFUSED_IDS = 1024;

interface UploadState {
  upload: Upload;
  path: string;
  started: number;
  /** Asked to resume: the client's `from` comes first. */
  awaitingFrom: boolean;
  /** The bytes come by an upload link (HTTPS PUT), sent once the upload is ready for them. */
  link?: boolean;
  /** The operation's steps (operation.ts): audit and the plugins' upload:after, exactly once. */
  op: Operation<'upload'>;
  /** A plugin's decoder when the client sent encoded bytes. */
  decoder: DecodingWriter | null;
  /** Set while the commit runs: its end, not the connection's, reports how it ended. */
  committing: boolean;
  /** The client asked to overwrite (its `exists` means "not allowed to" when the account may not overwrite). */
  overwriteAsked: boolean;
  account: LoggedIn['account'];
}

/**
 * A session's uploads: `put` starts one (checks, the plugins' veto, free space), its data frames are written as
 * they come, `end` commits it in the background (verified, then placed), `cancel` or a failure ends it. A refused
 * upload's id stays taken, and its data frames are dropped, until the client's `end` or `cancel`.
 */
export class Uploads {
  readonly #s: SessionScope;
  readonly #ingress: Ingress;
  readonly #active = new Map<number, UploadState>();
  readonly #refused = new Set<number>();

  constructor(s: SessionScope, ingress: Ingress) {
    this.#s = s;
    this.#ingress = ingress;
  }

  /** Uploads in flight (for the per-user transfer limit). */
  get count(): number {
    return this.#active.size;
  }

  /** Whether `id` is taken by an upload, running or refused. */
  owns(id: number): boolean {
    return this.#active.has(id) || this.#refused.has(id);
  }

  /** A refused `put`: its data frames are dropped until the client's `end` or `cancel`. */
  refuse(id: number): void {
    if (this.#refused.size >= MAX_REFUSED_IDS) throw new FerryError('unexpected_message', 'Too many refused uploads left open');
    this.#refused.add(id);
  }

  /** PUT: the checks, the veto, free space; then the bytes may come (after `resume`, with the offset offered). */
  async put(id: number, msg: ClientMessageOf<'put'>, user: LoggedIn, started: number): Promise<void> {
    const s = this.#s;
    const scope = scopeOf(s, user);
    const op = new Operation(scope, 'upload', { path: msg.path });
    let state: UploadState | null = null;
    let upload: Upload | null = null;
    let release: (() => void) | null = null;
    try {
      op.permit();
      if (msg.resume && !s.features.includes('resume')) throw new FerryError('bad_message', "'resume' was not negotiated in the handshake");
      if (msg.link && (s.ctx.links === null || !s.features.includes('link'))) throw new FerryError('bad_message', "'link' was not negotiated in the handshake");
      if (msg.link && msg.encoding !== undefined) throw new FerryError('bad_message', "An upload by 'link' takes the file's own bytes: no 'encoding'");
      if (msg.encoding !== undefined && !s.features.includes(`encoding:${msg.encoding}`)) {
        throw new FerryError('bad_message', `Encoding ${quotePath(msg.encoding.slice(0, 40))} was not negotiated in the handshake`);
      }
      checkSize(s, msg.path, msg.size);
      release = await s.reserveTransfer();
      try {
        // The storage checks the target as it starts the upload (one look instead of a stat first), or, when no
        // plugin needs to know what the upload replaces, as it commits (small uploads: one hop for it all).
        upload = await user.storage.createUpload(msg.path, {
          size: msg.size,
          // Without the overwrite permission, a file that appears meanwhile is not replaced at commit either.
          overwrite: msg.overwrite === true && user.account.perms.has('overwrite'),
          parents: msg.parents === true,
          resume: msg.resume === true,
          ...(msg.mtime !== undefined ? { mtime: msg.mtime } : {}),
          deferChecks: msg.encoding === undefined && !op.hooked,
          mayCreateParents: user.account.perms.has('mkdir'),
        });
      } catch (err) {
        throw refusalOf(err, user, msg.path, msg.overwrite === true);
      }
      if (upload.createsParents) op.permit('mkdir');
      const replaces = upload.replaces;
      await op.vet(() => ({ ...actorOf(scope), path: msg.path, size: msg.size, replaces }));
      try {
        await claimSpace(s, msg.path, msg.size - upload.offset);
      } catch (err) {
        await upload.abort(upload.offset > 0).catch(() => {}); // a resumable part is kept, an empty one goes
        upload = null;
        throw err;
      }
      if (s.stage === 'closed') {
        // The connection went while the upload was being set up: keep the partial, release the plugins.
        await upload.abort(true).catch(() => {});
        op.lost('The connection closed during the upload');
        return;
      }
      const resume = msg.resume === true;
      state = { upload, path: msg.path, started, awaitingFrom: resume, op, decoder: null, committing: false, overwriteAsked: msg.overwrite === true, account: user.account };
      this.#active.set(id, state);
      if (msg.encoding !== undefined) {
        const transform = await s.ctx.plugins.first('transfer:decode', { encoding: msg.encoding, op: { ...actorOf(scope), path: msg.path, size: msg.size, replaces } });
        if (!transform) throw new FerryError('bad_message', `No plugin decodes ${quotePath(msg.encoding.slice(0, 40))}`);
        state.decoder = new DecodingWriter(upload, transform, msg.encoding);
      }
      if (msg.link) state.link = true;
      if (resume) s.transport.send(id, { t: 'resume', offset: upload.offset, sha256: upload.prefixSha256 });
      else if (state.link) this.#sendLink(id);
    } catch (err) {
      if (state) {
        this.#active.delete(id);
        state.decoder?.destroy();
      }
      await upload?.abort(false).catch(() => {});
      op.failed(err);
      throw err;
    } finally {
      release?.();
    }
  }

  /** FROM: where a resumed upload goes on: the offered offset (the client's prefix matched), or 0. */
  async from(id: number, msg: ClientMessageOf<'from'>): Promise<void> {
    if (this.#refused.has(id)) return;
    const state = this.#active.get(id);
    if (!state || !state.awaitingFrom) throw new FerryError('unexpected_message', `'from' for request ${id}, which is not waiting for it`);
    state.awaitingFrom = false;
    if (msg.offset !== state.upload.offset) {
      if (msg.offset !== 0) throw new FerryError('unexpected_message', `'from' offset ${msg.offset} is neither 0 nor the offered ${state.upload.offset}`);
      await state.upload.restart();
    }
    if (state.link) this.#sendLink(id);
  }

  /**
   * The address the page PUTs the upload's bytes to (`put` with `link`): they enter this session's queue as DATA
   * frames would, paused and resumed with it; only while the upload is in progress.
   */
  #sendLink(id: number): void {
    const s = this.#s;
    const links = s.ctx.links;
    if (links === null) return;
    const url = links.mintUpload(s.host, {
      data: (chunks) => {
        const state = this.#active.get(id);
        if (!state || state.committing || state.awaitingFrom || s.stage === 'closed') return false;
        s.receiveData(id, chunks, true);
        return true;
      },
      onFlow: (listener) => s.onFlow(listener),
      // In the queue's order: a `cancel` the client sent before the link's connection closed is taken first.
      lost: () => s.afterQueued(id, () => this.#linkLost(id)),
    });
    s.transport.send(id, { t: 'link', url });
  }

  /**
   * DATA frames of an upload (a refused one's are dropped), or bytes from its upload link (`link`): those may still be
   * queued when the upload ends meanwhile (a cancel or a failure on the session, the request body still coming), and
   * are then dropped too — they are the browser's, not a protocol violation of the session's client.
   */
  async data(id: number, chunks: Buffer[], link = false): Promise<void> {
    if (this.#refused.has(id)) return;
    const state = this.#active.get(id);
    if (link && (!state || !state.link)) return;
    if (!state || state.awaitingFrom) throw new FerryError('unexpected_message', `Data for request ${id}, which is not an upload in progress`);
    try {
      await (state.decoder ?? state.upload).write(chunks);
    } catch (err) {
      await this.#fail(id, state, err);
    }
  }

  /** END: the client's digest; the upload commits in the background (see Ingress.commitInBackground). */
  async end(id: number, msg: ClientMessageOf<'end'>): Promise<void> {
    if (this.#refused.delete(id)) return;
    const state = this.#active.get(id);
    if (!state || state.awaitingFrom || state.committing) throw new FerryError('unexpected_message', `'end' for request ${id}, which is not an upload in progress`);
    const { sha256 } = msg;
    if (sha256 === undefined) throw new FerryError('bad_message', "Message 'end' of an upload lacks field 'sha256'");
    state.committing = true;
    this.#ingress.commitInBackground(id, state.path, this.#commit(id, state, sha256));
  }

  /** CANCEL of an upload; false when `id` is not one (it may be a download). */
  async cancel(id: number): Promise<boolean> {
    if (this.#refused.delete(id)) return true;
    const up = this.#active.get(id);
    if (!up || up.committing) return false;
    this.#active.delete(id);
    await up.upload.abort(false).catch(() => {});
    up.decoder?.destroy();
    up.op.failed(new FerryError('cancelled', 'Upload cancelled'));
    this.#s.transport.send(id, { t: 'error', code: 'cancelled', message: 'Upload cancelled' });
    return true;
  }

  /**
   * The upload link's request ended before its whole body came (its connection dropped): the upload ends as it would
   * if the session's own connection had dropped — the part received is kept for a resume — while the session lives
   * on; `connection_lost` tells the client, which may resume at once. It runs in the session's queue after what came
   * before it: the link's bytes already queued are written first, and a user's `cancel` that came first wins.
   */
  async #linkLost(id: number): Promise<void> {
    const up = this.#active.get(id);
    if (!up || up.committing || !up.link) return;
    this.#active.delete(id);
    this.refuse(id);
    up.decoder?.destroy();
    const message = 'The upload link’s connection closed before all the bytes came; the part received is kept for a resume';
    up.op.lost(message);
    await up.upload.abort(true).catch(() => {});
    this.#s.transport.send(id, { t: 'error', code: 'connection_lost', message });
    this.#s.info(`UPLD ${escapeText(up.path, 200)}: connection_lost: the upload link's connection closed at ${up.upload.received} B`);
  }

  /** The connection is gone: uploads not committing keep their partial for a resume. Returns how many. */
  async close(): Promise<number> {
    const interrupted = [...this.#active.values()].filter((u) => !u.committing);
    this.#active.clear();
    await Promise.all(
      interrupted.map((u) => {
        u.decoder?.destroy();
        u.op.lost('The connection closed during the upload');
        return u.upload.abort(true).catch(() => {});
      }),
    );
    return interrupted.length;
  }

  /** Verifies and places an upload, then answers; runs in the background. Never throws. */
  async #commit(id: number, state: UploadState, sha256: string): Promise<void> {
    try {
      await state.decoder?.finish();
      const entry = await state.upload.commit(sha256);
      this.#active.delete(id);
      state.decoder?.destroy();
      const durationMs = Date.now() - state.started;
      const resumedFrom = state.upload.offset;
      state.op.succeeded({ bytes: entry.size, durationMs, sha256 });
      this.#s.transport.send(id, { t: 'ok', result: { size: entry.size, sha256, resumedFrom, entry } });
      this.#s.info(`UPLD ${escapeText(state.path, 200)}: received ${entry.size} B in ${durationMs} ms${resumedFrom ? ` (resumed at ${resumedFrom})` : ''}, sha256 verified`);
    } catch (err) {
      // commit() removes the partial itself on a mismatch; the id is finished either way (the client sent `end`).
      await this.#fail(id, state, refusalOf(err, { account: state.account }, state.path, state.overwriteAsked), false);
    }
  }

  /**
   * Ends an upload with an error. `refuseLater`: the client may still be sending (its data frames and `end` are
   * then dropped until it cancels); false once the client has sent `end`.
   */
  async #fail(id: number, state: UploadState, err: unknown, refuseLater = true): Promise<void> {
    this.#active.delete(id);
    if (refuseLater) this.refuse(id);
    await state.upload.abort(false).catch(() => {});
    state.decoder?.destroy();
    const ferr = this.#s.problem(err, 'put');
    state.op.failed(ferr);
    this.#s.transport.send(id, { t: 'error', code: ferr.code, message: ferr.message });
    this.#s.info(`UPLD ${escapeText(state.path, 200)}: ${ferr.code}: ${ferr.message}`);
  }
}

/** Refuses a file larger than the server accepts: `too_large` to a client that negotiated it, else the quota refusal it knows. */
export function checkSize(s: SessionScope, path: string, size: number): void {
  const { maxUploadBytes } = s.ctx.options;
  if (size <= maxUploadBytes) return;
  const code = s.features.includes('too_large') ? 'too_large' : 'quota_exceeded';
  throw new FerryError(code, `${quotePath(path)} is ${size} bytes; this server accepts files of at most ${maxUploadBytes} bytes`);
}

/** Counts `needed` bytes as about to be written; `no_space` when that would leave less than the server keeps free. */
export async function claimSpace(s: SessionScope, path: string, needed: number): Promise<void> {
  if (needed <= 0) return;
  const { minFreeBytes } = s.ctx.options;
  const free = await s.ctx.freeSpace.claim(needed);
  if (free !== null && free - needed < minFreeBytes) {
    throw new FerryError('no_space', `Not enough disk space on the server for ${quotePath(path)}: it needs ${needed} more bytes, ${Math.max(0, free - minFreeBytes)} are available`);
  }
}

/**
 * A storage refusal of an upload in the protocol's words (as it starts, or as it commits after deferred checks):
 * `exists` when the client asked to overwrite is `permission_denied` for an account that may not.
 */
export function refusalOf(err: unknown, user: Pick<LoggedIn, 'account'>, path: string, overwriteAsked: boolean): unknown {
  if (err instanceof FerryError && err.code === 'exists') {
    if (overwriteAsked) {
      try {
        need(user.account, 'overwrite');
      } catch (denied) {
        return denied;
      }
    }
    return new FerryError('exists', `${quotePath(path)} exists (use overwrite to replace it)`);
  }
  if (err instanceof FerryError && err.code === 'is_a_directory') return new FerryError('is_a_directory', `${quotePath(path)} is a directory`);
  return err;
}
