import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { AuditEvent } from '../audit/event.ts';
import { auditTime } from '../audit/log.ts';
import { burnPasswordCheck, validatePassword, verifyPassword } from '../auth/password.ts';
import { validateUsername } from '../auth/users.ts';
import { PERMISSIONS, type Account, type Permission } from '../auth/types.ts';
import { FerryError, isErrorCode, type ErrorCode } from '../core/errors.ts';
import type { Entry } from '../core/entry.ts';
import { HEADER_SIZE, PROTOCOL_VERSION, parseClientMessage, type ClientMessage, type ClientMessageOf } from '../protocol/mod.ts';
import type { Actor, Deny, DownloadOp, EncodedStream, Outcome, UploadOp } from '../plugin/types.ts';
import { DecodingWriter } from './encoding.ts';
import { joinVirtual, parseVirtualPath, quotePath } from '../core/paths.ts';
import { escapeText, word } from '../core/text.ts';
import { canonicalIp, formatAddress } from '../core/address.ts';
import type { Storage, Upload } from '../storage/storage.ts';
import { settled } from '../transport/streams.ts';
import { Wire } from '../transport/wire.ts';
import type { ServerContext } from './context.ts';

type Item =
  | { kind: 'msg'; id: number; msg: ClientMessage; bytes: number }
  | { kind: 'data'; id: number; chunk: Buffer; bytes: number };

interface UploadState {
  upload: Upload;
  path: string;
  started: number;
  awaitingFrom: boolean;
  /** Set while plugins must still hear how this upload ended (upload:after, exactly once). */
  op: UploadOp | null;
  /** A plugin's decoder when the client sent encoded bytes. */
  decoder: DecodingWriter | null;
  /** Set while commit() runs: onEnd, not onClose, reports how it ended. */
  committing: boolean;
  /** The client asked to overwrite (its `exists` means "not allowed to" when the account may not overwrite). */
  overwriteAsked: boolean;
}

interface DownloadState {
  cancelled: boolean;
}

/** Incoming bytes queued beyond this pause the socket until the queue is worked off. */
const QUEUE_HIGH = 4 * 1024 * 1024;
const QUEUE_LOW = 1 * 1024 * 1024;
/** Consecutive data frames of one upload are written together, up to this many bytes. */
const WRITE_BATCH = 2 * 1024 * 1024;
const READ_CHUNK = 512 * 1024;
/** Server-sent listing messages stay well under a client's 64 KiB message limit. */
const PAGE_JSON_BUDGET = 48 * 1024;
const MAX_REFUSED_IDS = 1024;
/**
 * Uploads of one session committing at once (fsync, then the rename into place). The frames after an `end`
 * go on while its commit runs; see `Session.waitForCommits` for what waits for it.
 */
const MAX_COMMITS = 16;
/** Downloads of one session being opened at once (see `Session.opening`). */
const MAX_OPENING = 16;
/** Paths in audit events are cut to this many characters (a valid path is at most 4096 bytes). */
const MAX_AUDIT_PATH = 4096;
/** Most events one RDLOG returns. */
const MAX_LOG_EVENTS = 10_000;

/** The original's words for each request, for the console. */
const INSTRUCTION: Partial<Record<ClientMessage['t'], string>> = {
  put: 'UPLD', get: 'DWLD', list: 'LIST', delete: 'DELF', log: 'RDLOG', clearlog: 'CLRLOG', mkdir: 'MKDIR',
  rename: 'RENAME', stat: 'STAT', signup: 'SIGNUP', login: 'LOGIN',
};

let nextSessionNumber = 1;

/**
 * Per server (context): the logged-in sessions of each user and the transfers being set up, so that the
 * per-user transfer limit holds across connections.
 */
const USERS = new WeakMap<ServerContext, Map<string, { sessions: Set<Session>; pending: number }>>();

/**
 * One client connection: handshake, log-in, then requests. Frames are processed strictly in the order
 * they arrive (so a pipelined `login` + `list`, or `put a` + `rename a b`, mean what they say); a
 * download's bytes are streamed in the background once its file is open, so many can interleave.
 */
export class Session {
  readonly number = nextSessionNumber++;
  readonly address: string;
  /** The peer's IP address alone (throttling is per address, not per port). */
  readonly host: string;
  private readonly wire: Wire;
  private stage: 'hello' | 'auth' | 'ready' | 'closed' = 'hello';
  private account: Account | null = null;
  /** Features agreed in the handshake. */
  private features: readonly string[] = [];
  private storage: Storage | null = null;
  private readonly queue: Item[] = [];
  private queuedBytes = 0;
  private pumping = false;
  private pausedForQueue = false;
  private readonly uploads = new Map<number, UploadState>();
  private readonly downloads = new Map<number, DownloadState>();
  /** Downloads streaming in the background; `bye` lets them finish first. */
  private readonly streaming = new Set<Promise<void>>();
  /**
   * Downloads being opened, by request id. Consecutive `get`s are opened side by side (a burst of small ones is
   * checked and read in one hop of the storage's worker); any other request waits until they are open.
   */
  private readonly opening = new Map<number, Promise<void>>();
  /** Uploads committing in the background, by request id, with the path each one commits. */
  private readonly commits = new Map<number, { path: string; done: Promise<void> }>();
  /** Refused puts: their data frames are dropped until the client's `end` or `cancel`. */
  private readonly refused = new Set<number>();
  private readonly timers: NodeJS.Timeout[] = [];
  /** A plugin's connection:open verdict; nothing is processed before it is known. */
  private gate: Promise<Deny | null> | null = null;
  private closedResolve!: () => void;
  readonly closed = new Promise<void>((resolve) => (this.closedResolve = resolve));

  constructor(
    socket: Socket,
    private readonly ctx: ServerContext,
  ) {
    const host = canonicalIp(socket.remoteAddress ?? '?');
    this.host = host;
    this.address = formatAddress(host, socket.remotePort ?? 0);
    this.wire = new Wire(
      socket,
      {
        onMessage: (id, body) => this.enqueue({ kind: 'msg', id, msg: parseClientMessage(body), bytes: body.length }),
        onData: (id, chunk) => this.enqueue({ kind: 'data', id, chunk, bytes: chunk.length }),
        onClose: (err) => void this.onClose(err),
      },
      ctx.options.limits,
    );
    const { handshakeTimeoutMs, authTimeoutMs, idleTimeoutMs } = ctx.options;
    this.timers.push(setTimeout(() => this.stage === 'hello' && this.timeout('handshake'), handshakeTimeoutMs));
    this.timers.push(setTimeout(() => this.stage !== 'ready' && this.timeout('log-in'), authTimeoutMs));
    socket.setTimeout(idleTimeoutMs, () => this.timeout('idle'));
    this.info('Connected');
    if (ctx.plugins.has('connection:open')) this.gate = ctx.plugins.veto('connection:open', { address: this.address, host: this.host });
  }

  get user(): string | null {
    return this.account?.name ?? null;
  }

  /** Ends the session from the server side with a final error frame (shutdown, connection caps). */
  terminate(error: FerryError): void {
    this.wire.fail(error);
  }

  private info(line: string): void {
    this.ctx.log.info(`[#${this.number} ${this.address}${this.account ? ` ${word(this.account.name)}` : ''}] ${line}`);
  }

  private timeout(what: string): void {
    if (this.stage === 'closed') return;
    this.info(`Closing: ${what} timeout`);
    this.wire.fail(new FerryError('timeout', `No ${what} within the time allowed`));
  }

  // ---- queue -------------------------------------------------------------------------------------

  private enqueue(item: Item): void {
    if (this.stage === 'closed') return;
    this.queue.push(item);
    this.queuedBytes += item.bytes;
    if (!this.pausedForQueue && this.queuedBytes > QUEUE_HIGH) {
      this.pausedForQueue = true;
      this.wire.pause();
    }
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      if (this.gate) {
        const deny = await this.gate;
        this.gate = null;
        if (deny) {
          const refusal = refusalOf(deny);
          this.info(`Refused by a plugin: ${refusal.message}`);
          this.wire.fail(refusal);
          return;
        }
      }
      while (this.queue.length > 0 && this.stage !== 'closed') {
        const item = this.queue.shift() as Item;
        let bytes = item.bytes;
        try {
          if (this.commits.size > 0) await this.waitForCommits(item);
          if (item.kind === 'msg' && item.msg.t === 'get' && this.stage === 'ready') {
            if (this.opening.size >= MAX_OPENING) await Promise.all(this.opening.values());
            this.openInBackground(item.id, item.msg);
            continue;
          }
          if (this.opening.size > 0) await Promise.all(this.opening.values());
          if (item.kind === 'data') {
            const chunks = [item.chunk];
            let batch = item.chunk.length;
            while (batch < WRITE_BATCH) {
              const next = this.queue[0];
              if (!next || next.kind !== 'data' || next.id !== item.id) break;
              this.queue.shift();
              chunks.push(next.chunk);
              batch += next.chunk.length;
              bytes += next.bytes;
            }
            await this.onData(item.id, chunks);
          } else {
            await this.onRequest(item.id, item.msg);
          }
        } finally {
          this.queuedBytes -= bytes;
          if (this.pausedForQueue && this.queuedBytes < QUEUE_LOW) {
            this.pausedForQueue = false;
            this.wire.resume();
          }
        }
      }
    } catch (err) {
      // Only protocol violations get here (request errors are answered in onRequest).
      this.wire.fail(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.pumping = false;
    }
  }

  /** Starts a `get` without waiting for its file to be opened (see `opening`). */
  private openInBackground(id: number, msg: ClientMessageOf<'get'>): void {
    if (this.opening.has(id)) throw new FerryError('duplicate_id', `Request id ${id} is already in use`);
    const task = this.onRequest(id, msg)
      .catch((err: unknown) => this.wire.fail(err instanceof Error ? err : new Error(String(err))))
      .finally(() => this.opening.delete(id));
    this.opening.set(id, task);
  }

  /**
   * Uploads commit in the background, so that one file's fsync and rename overlap with the next file's
   * bytes. What the client sent after an `end` must still mean what it says: a request that reads or
   * changes the tree (list, stat, get, rename, delete, mkdir, bye, ...) waits for every commit in flight, a
   * `put` waits for one of the same path, and at most MAX_COMMITS run at once. Data, `end`, `from` and
   * `cancel` of other uploads go straight on.
   */
  private async waitForCommits(item: Item): Promise<void> {
    const all = (): Promise<unknown> => Promise.all([...this.commits.values()].map((c) => c.done));
    if (item.kind === 'data') return;
    const { msg } = item;
    if (msg.t === 'end' || msg.t === 'from' || msg.t === 'cancel' || msg.t === 'error') {
      if (msg.t === 'end' && this.commits.size >= MAX_COMMITS) await Promise.race([...this.commits.values()].map((c) => c.done));
      return;
    }
    if (msg.t === 'put') {
      const path = samePath(msg.path);
      const same = [...this.commits.values()].filter((c) => c.path === path);
      if (same.length > 0) await Promise.all(same.map((c) => c.done));
      return;
    }
    await all();
  }

  // ---- dispatch ----------------------------------------------------------------------------------

  private async onRequest(id: number, msg: ClientMessage): Promise<void> {
    if (msg.t === 'error') {
      this.info(`The client gave up on the connection: ${escapeText(msg.code, 40)}: ${escapeText(msg.message, 200)}`);
      this.stage = 'closed';
      this.wire.end();
      return;
    }
    if (this.stage === 'hello') {
      if (msg.t !== 'hello' || id !== 0) throw new FerryError('unexpected_message', `Expected 'hello' first, got '${msg.t}'`);
      return this.onHello(msg);
    }
    switch (msg.t) {
      case 'hello':
        throw new FerryError('unexpected_message', "A second 'hello'");
      case 'end':
        return this.onEnd(id, msg);
      case 'from':
        return this.onFrom(id, msg);
      case 'cancel':
        return this.onCancel(id);
      default:
        break;
    }
    if (id === 0 && msg.t !== 'bye') throw new FerryError('unexpected_message', `Request '${msg.t}' without an id`);
    if (this.uploads.has(id) || this.downloads.has(id) || this.refused.has(id)) {
      throw new FerryError('duplicate_id', `Request id ${id} is already in use`);
    }
    const started = Date.now();
    try {
      const result = await this.handle(id, msg, started);
      if (result !== undefined) this.wire.send(id, result === null ? { t: 'ok' } : { t: 'ok', result });
    } catch (err) {
      const ferr = this.asFerryError(err, msg);
      if (ferr.fatal) throw ferr;
      if (msg.t === 'put') this.refuse(id);
      // Transfers refused before they began (permissions, a plugin's veto, a missing file) are evidence too.
      if ((msg.t === 'put' || msg.t === 'get') && this.account) {
        this.audit({ event: msg.t === 'put' ? 'upload' : 'download', path: msg.path, result: 'error', error: ferr.code });
      }
      this.wire.send(id, { t: 'error', code: ferr.code, message: ferr.message });
      const verb = INSTRUCTION[msg.t];
      if (verb) this.info(`${verb} ${describe(msg)}: ${ferr.code}: ${ferr.message}`);
    }
  }

  /** Handles one request; returns the `ok` result (null for a bare ok), or undefined when it replies itself. */
  private async handle(id: number, msg: ClientMessage, started: number): Promise<object | null | undefined> {
    switch (msg.t) {
      case 'ping':
        return null;
      case 'bye':
        await Promise.all(this.streaming);
        this.wire.send(id, { t: 'ok' });
        this.stage = 'closed';
        this.wire.end();
        return undefined;
      case 'signup':
        return this.onSignup(msg);
      case 'login':
        return this.onLogin(msg);
      default:
        break;
    }
    if (this.stage !== 'ready' || !this.storage || !this.account) throw new FerryError('auth_required', 'Log in first (LOGIN or SIGNUP)');
    const storage = this.storage;
    switch (msg.t) {
      case 'list':
        return this.onList(id, msg, storage);
      case 'stat': {
        this.need('list');
        const entry = await storage.stat(msg.path);
        await this.vetoed(this.plugins.has('list:before') && this.plugins.veto('list:before', { ...this.actor(), path: msg.path, entry }));
        if (!entry) throw new FerryError('not_found', `No such file or directory: ${quotePath(msg.path)}`);
        const usage = await this.usage();
        if (!msg.sha256 || entry.type !== 'file') return { entry, ...usage };
        // Hashing reads the whole file: it needs the download permission, like reading it would.
        this.need('download');
        return { entry, sha256: await hashFile(storage, msg.path), ...usage };
      }
      case 'put':
        return this.onPut(id, msg, storage, started);
      case 'get':
        return this.onGet(id, msg, storage, started);
      case 'delete': {
        this.need('delete');
        const hooked = this.plugins.has('delete:before') || this.plugins.has('delete:after');
        const op = { ...this.actor(), path: msg.path, entry: hooked ? await storage.stat(msg.path) : null };
        await this.audited({ event: 'delete', path: msg.path }, async () => {
          await this.vetoed(this.plugins.has('delete:before') && this.plugins.veto('delete:before', op));
          await this.notified((outcome) => this.plugins.notify('delete:after', op, outcome), this.plugins.has('delete:after'), () => storage.remove(msg.path));
        });
        this.info(`DELF ${escapeText(msg.path, 200)}: deleted`);
        return null;
      }
      case 'mkdir': {
        this.need('mkdir');
        const op = { ...this.actor(), path: msg.path, entry: null };
        await this.audited({ event: 'mkdir', path: msg.path }, async () => {
          await this.vetoed(this.plugins.has('mkdir:before') && this.plugins.veto('mkdir:before', op));
          await this.notified((outcome) => this.plugins.notify('mkdir:after', op, outcome), this.plugins.has('mkdir:after'), () =>
            storage.mkdir(msg.path, { parents: msg.parents === true }),
          );
        });
        this.info(`MKDIR ${escapeText(msg.path, 200)}: created`);
        return null;
      }
      case 'rename': {
        this.need('rename');
        const replaces = await storage.stat(msg.to);
        if (msg.overwrite && replaces) this.need('overwrite');
        const hooked = this.plugins.has('rename:before') || this.plugins.has('rename:after');
        const op = { ...this.actor(), from: msg.from, to: msg.to, entry: hooked ? await storage.stat(msg.from) : null, replaces };
        await this.audited({ event: 'rename', path: msg.from, to: msg.to }, async () => {
          await this.vetoed(this.plugins.has('rename:before') && this.plugins.veto('rename:before', op));
          await this.notified((outcome) => this.plugins.notify('rename:after', op, outcome), this.plugins.has('rename:after'), () =>
            storage.rename(msg.from, msg.to, { overwrite: msg.overwrite === true }),
          );
        });
        this.info(`RENAME ${escapeText(msg.from, 200)} -> ${escapeText(msg.to, 200)}: done`);
        return null;
      }
      case 'log':
        return this.onLog(id, msg);
      case 'clearlog':
        return this.onClearLog();
    }
    throw new FerryError('unexpected_message', `Unexpected '${msg.t}'`);
  }

  private asFerryError(err: unknown, msg: ClientMessage): FerryError {
    if (err instanceof FerryError) return err;
    this.ctx.log.warn(`[#${this.number}] internal error in '${msg.t}': ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    return new FerryError('internal', 'The server hit an unexpected error; it has been logged');
  }

  private need(perm: Permission): void {
    if (!this.account?.perms.has(perm)) {
      throw new FerryError('permission_denied', `Your account may not ${perm === 'list' ? 'list or stat' : perm}`);
    }
  }

  private get plugins() {
    return this.ctx.plugins;
  }

  private actor(): Actor {
    const a = this.account as Account;
    return { user: a.name, role: a.role, address: this.address };
  }

  /** Turns a plugin's refusal into the request's error. `false` (no plugin listens) costs nothing. */
  private async vetoed(pending: false | Promise<Deny | null>): Promise<void> {
    if (!pending) return;
    const deny = await pending;
    if (deny) throw refusalOf(deny);
  }

  /** Runs an operation and tells the plugins how it ended. */
  private async notified<T>(tell: (outcome: Outcome) => void, listening: boolean, op: () => Promise<T>): Promise<T> {
    if (!listening) return op();
    try {
      const value = await op();
      tell({ ok: true });
      return value;
    } catch (err) {
      tell(outcomeOf(err));
      throw err;
    }
  }

  /** Usage figures from a plugin (e.g. quota), for LIST and STAT replies. */
  private async usage(): Promise<{ usage?: object }> {
    if (!this.plugins.has('usage:get')) return {};
    const usage = await this.plugins.first('usage:get', this.actor());
    return usage ? { usage } : {};
  }

  private audit(event: Omit<AuditEvent, 'time' | 'user' | 'address'> & { user?: string }): void {
    const full: AuditEvent = { time: auditTime(), user: this.account?.name ?? '?', address: this.address, ...event };
    // What a client sent is recorded, but bounded: one event must always fit in a reply page.
    full.user = capped(full.user, 64);
    if (full.path !== undefined) full.path = capped(full.path, MAX_AUDIT_PATH);
    if (full.to !== undefined) full.to = capped(full.to, MAX_AUDIT_PATH);
    this.ctx.audit
      .append(full)
      .then(() => this.plugins.notify('audit', full))
      .catch((err: unknown) => this.ctx.log.warn(`audit log append failed: ${String(err)}`));
  }

  /** Runs an operation and records it in the audit log with its result either way. */
  private async audited<T>(event: Omit<AuditEvent, 'time' | 'user' | 'address' | 'result'>, op: () => Promise<T>): Promise<T> {
    try {
      const value = await op();
      this.audit({ ...event, result: 'ok' });
      return value;
    } catch (err) {
      this.audit({ ...event, result: 'error', error: err instanceof FerryError ? err.code : 'internal' });
      throw err;
    }
  }

  // ---- handshake and accounts --------------------------------------------------------------------

  private onHello(msg: ClientMessageOf<'hello'>): void {
    if (msg.v !== PROTOCOL_VERSION) {
      throw new FerryError('version_mismatch', `This server speaks protocol version ${PROTOCOL_VERSION}, the client ${msg.v}`);
    }
    const features = this.ctx.features.filter((f) => msg.features.includes(f));
    this.features = features;
    this.wire.send(0, {
      t: 'welcome',
      v: PROTOCOL_VERSION,
      agent: this.ctx.agent,
      features,
      maxData: this.ctx.options.limits.maxData,
      maxMessage: this.ctx.options.limits.maxMessage,
      signup: this.ctx.options.signup,
    });
    this.stage = 'auth';
    this.info(`Handshake done (client ${escapeText(msg.agent, 64)})`);
  }

  private async onSignup(msg: ClientMessageOf<'signup'>): Promise<object> {
    if (this.stage === 'ready') throw new FerryError('already_authenticated', 'Already logged in');
    if (this.ctx.options.signup !== 'open') throw new FerryError('signup_closed', 'Sign-up is closed on this server; ask an admin for an account');
    validateUsername(msg.user);
    validatePassword(msg.password);
    if (!this.ctx.signups.take(this.host)) {
      this.info(`Sign-up refused for user: ${word(msg.user)} (too many sign-ups from this address)`);
      throw new FerryError('locked_out', 'Too many sign-ups from your address; try again in an hour');
    }
    try {
      const record = await this.ctx.users.add(msg.user, msg.password);
      this.becomeUser({ name: record.name, role: record.role, perms: new Set(record.perms) });
      this.audit({ event: 'signup', result: 'ok' });
      this.info(`Signed up user: ${record.name}`);
      return this.accountResult();
    } catch (err) {
      this.audit({ event: 'signup', user: msg.user, result: 'error', error: err instanceof FerryError ? err.code : 'internal' });
      throw err;
    }
  }

  private async onLogin(msg: ClientMessageOf<'login'>): Promise<object> {
    if (this.stage === 'ready') throw new FerryError('already_authenticated', 'Already logged in');
    const { throttle, users } = this.ctx;
    const host = this.host;
    const name = msg.user.slice(0, 64);
    const gate = throttle.check(host, name);
    if (!gate.allowed) {
      const seconds = Math.ceil(gate.retryAfterMs / 1000);
      this.audit({ event: 'login_failed', user: name, result: 'error', error: 'locked_out' });
      this.info(`Authentication failed for user: ${word(name)} (locked out for ${seconds} s)`);
      throw new FerryError('locked_out', `Too many failed log-ins; try again in ${seconds} s`);
    }
    if (this.plugins.has('auth:login')) {
      const result = await this.plugins.first('auth:login', { user: name, password: msg.password, address: this.address });
      if (result && 'user' in result) {
        throttle.success(host, name);
        const perms = result.user.perms ?? [...PERMISSIONS];
        this.becomeUser({ name: result.user.name, role: result.user.role ?? 'user', perms: new Set(perms) });
        this.audit({ event: 'login', result: 'ok', detail: 'authenticated by a plugin' });
        this.info(`Authentication successful for user: ${word(result.user.name)} (by a plugin)`);
        return this.accountResult();
      }
      if (result && 'deny' in result) {
        throttle.failure(host, name);
        this.audit({ event: 'login_failed', user: name, result: 'error', error: 'auth_failed', detail: 'refused by a plugin' });
        this.info(`Authentication failed for user: ${word(name)} (refused by a plugin)`);
        throw refusalOf(result, 'auth_failed');
      }
    }
    const record = await users.get(name).catch(() => null);
    const ok = record ? await verifyPassword(msg.password, record.hash) : (await burnPasswordCheck(msg.password), false);
    if (!ok || !record) {
      throttle.failure(host, name);
      const delay = throttle.delayFor(host, name);
      this.audit({ event: 'login_failed', user: name, result: 'error', error: 'auth_failed' });
      this.info(`Authentication failed for user: ${word(name)}`);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      throw new FerryError('auth_failed', 'Wrong user name or password');
    }
    throttle.success(host, name);
    this.becomeUser({ name: record.name, role: record.role, perms: new Set(record.perms) });
    this.audit({ event: 'login', result: 'ok' });
    this.info(`Authentication successful for user: ${record.name}`);
    return this.accountResult();
  }

  private becomeUser(account: Account): void {
    this.account = account;
    this.storage = this.ctx.storage.forUser(account.name);
    this.stage = 'ready';
    this.userEntry(true)?.sessions.add(this);
  }

  /** This user's entry in the per-server registry (created when `create`). */
  private userEntry(create = false): { sessions: Set<Session>; pending: number } | undefined {
    const name = this.account?.name;
    if (name === undefined) return undefined;
    let users = USERS.get(this.ctx);
    if (!users) USERS.set(this.ctx, (users = new Map()));
    let entry = users.get(name);
    if (!entry && create) users.set(name, (entry = { sessions: new Set(), pending: 0 }));
    return entry;
  }

  /**
   * Reserves one of the user's transfer slots (uploads + downloads in flight across all their connections)
   * while a transfer is set up; `busy` when none is free. The returned function gives the reservation back,
   * once the transfer is counted in `uploads` / `downloads` (or failed).
   */
  private reserveTransfer(): () => void {
    const entry = this.userEntry(true) as { sessions: Set<Session>; pending: number };
    let inFlight = entry.pending;
    for (const s of entry.sessions) inFlight += s.uploads.size + s.downloads.size;
    const max = this.ctx.options.maxTransfersPerUser;
    if (inFlight >= max) throw new FerryError('busy', `You have ${inFlight} transfers in progress (the limit is ${max}); try again when one ends`);
    entry.pending++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.pending--;
    };
  }

  private accountResult(): object {
    const a = this.account as Account;
    return { user: a.name, role: a.role, perms: [...a.perms] };
  }

  // ---- listing and log ---------------------------------------------------------------------------

  /** Sends items as several messages of type `t`, each well under the client's message limit. */
  private async sendPaged<T>(id: number, t: 'entries' | 'events', key: 'entries' | 'events', items: readonly T[]): Promise<void> {
    let page: T[] = [];
    let size = 0;
    const flush = async () => {
      if (page.length === 0) return;
      if (!this.wire.send(id, { t, [key]: page })) await this.wire.drained();
      page = [];
      size = 0;
    };
    for (const item of items) {
      const itemSize = Buffer.byteLength(JSON.stringify(item)) + 1;
      if (size + itemSize > PAGE_JSON_BUDGET) await flush();
      page.push(item);
      size += itemSize;
    }
    await flush();
  }

  private async onList(id: number, msg: ClientMessageOf<'list'>, storage: Storage): Promise<object> {
    this.need('list');
    const target = await storage.stat(msg.path);
    await this.vetoed(this.plugins.has('list:before') && this.plugins.veto('list:before', { ...this.actor(), path: msg.path, entry: target }));
    if (!target) throw new FerryError('not_found', `No such file or directory: ${quotePath(msg.path)}`);
    let count = 0;
    let bytes = 0;
    const tally = (entries: readonly Entry[]) => {
      count += entries.length;
      for (const e of entries) if (e.type === 'file') bytes += e.size;
    };
    if (target.type === 'file') {
      await this.sendPaged(id, 'entries', 'entries', [target]);
      tally([target]);
    } else {
      for await (const page of storage.list(msg.path)) {
        await this.sendPaged(id, 'entries', 'entries', page);
        tally(page);
      }
    }
    this.info(`LIST ${escapeText(msg.path || '.', 200)}: ${count} entries`);
    return { count, bytes, ...(await this.usage()) };
  }

  private async onLog(id: number, msg: ClientMessageOf<'log'>): Promise<object> {
    const account = this.account as Account;
    const admin = account.role === 'admin';
    const all = admin && msg.all !== false;
    const limit = Math.min(msg.limit ?? 1000, MAX_LOG_EVENTS);
    const events = await this.ctx.audit.read(all ? { limit } : { user: account.name, limit });
    await this.sendPaged(id, 'events', 'events', events);
    this.audit({ event: 'log_read', result: 'ok', detail: all ? 'all users' : 'own events' });
    this.info(`RDLOG: ${events.length} events${all ? ' (all users)' : ''}`);
    return { count: events.length, scope: all ? 'all' : 'own' };
  }

  private async onClearLog(): Promise<object> {
    const account = this.account as Account;
    if (account.role !== 'admin') {
      this.audit({ event: 'log_clear', result: 'error', error: 'permission_denied' });
      throw new FerryError('permission_denied', 'Only an admin may clear the log');
    }
    const archive = await this.ctx.audit.clear(account.name, this.address);
    this.info(`CLRLOG: archived as ${archive}`);
    return { archive };
  }

  // ---- uploads -----------------------------------------------------------------------------------

  private refuse(id: number): void {
    if (this.refused.size >= MAX_REFUSED_IDS) throw new FerryError('unexpected_message', 'Too many refused uploads left open');
    this.refused.add(id);
  }

  private async onPut(id: number, msg: ClientMessageOf<'put'>, storage: Storage, started: number): Promise<undefined> {
    this.need('upload');
    if (msg.resume && !this.features.includes('resume')) throw new FerryError('bad_message', "'resume' was not negotiated in the handshake");
    if (msg.encoding !== undefined && !this.features.includes(`encoding:${msg.encoding}`)) {
      throw new FerryError('bad_message', `Encoding ${quotePath(msg.encoding.slice(0, 40))} was not negotiated in the handshake`);
    }
    const { maxUploadBytes, minFreeBytes } = this.ctx.options;
    if (msg.size > maxUploadBytes) {
      // Refused as too_large to a client that understands the code (negotiated), else as the quota refusal it knows.
      const code = this.features.includes('too_large') ? 'too_large' : 'quota_exceeded';
      throw new FerryError(code, `${quotePath(msg.path)} is ${msg.size} bytes; this server accepts files of at most ${maxUploadBytes} bytes`);
    }
    const release = this.reserveTransfer();
    // From the veto on, plugins hear exactly once how this upload ended.
    let op: UploadOp | null = null;
    let state: UploadState | null = null;
    let upload: Upload | null = null;
    try {
      try {
        // The storage checks the target as it starts the upload (one look instead of a stat first), or, when no
        // plugin needs to know what the upload replaces, as it commits (small uploads: one hop for it all).
        upload = await storage.createUpload(msg.path, {
          size: msg.size,
          // Without the overwrite permission, a file that appears meanwhile is not replaced at commit either.
          overwrite: msg.overwrite === true && (this.account?.perms.has('overwrite') ?? false),
          parents: msg.parents === true,
          resume: msg.resume === true,
          ...(msg.mtime !== undefined ? { mtime: msg.mtime } : {}),
          deferChecks: msg.encoding === undefined && !this.plugins.has('upload:before') && !this.plugins.has('upload:after'),
          mayCreateParents: this.account?.perms.has('mkdir') ?? false,
        });
      } catch (err) {
        throw this.uploadRefusal(err, msg.path, msg.overwrite === true);
      }
      if (upload.createsParents) this.need('mkdir');
      const vetoOp: UploadOp = { ...this.actor(), path: msg.path, size: msg.size, replaces: upload.replaces };
      await this.vetoed(this.plugins.has('upload:before') && this.plugins.veto('upload:before', vetoOp));
      op = vetoOp;
      const needed = msg.size - upload.offset;
      const free = needed > 0 ? await this.ctx.freeSpace.claim(needed) : null;
      if (free !== null && free - needed < minFreeBytes) {
        await upload.abort(upload.offset > 0).catch(() => {}); // a resumable part is kept, an empty one goes
        upload = null;
        throw new FerryError('no_space', `Not enough disk space on the server for ${quotePath(msg.path)}: it needs ${needed} more bytes, ${Math.max(0, free - minFreeBytes)} are available`);
      }
      if (this.stage === 'closed') {
        // The connection went while the upload was being set up: keep the partial, release the plugins.
        await upload.abort(true).catch(() => {});
        this.plugins.notify('upload:after', op, { ok: false, code: 'connection_lost', message: 'The connection closed during the upload' });
        return undefined;
      }
      const resume = msg.resume === true;
      state = { upload, path: msg.path, started, awaitingFrom: resume, op, decoder: null, committing: false, overwriteAsked: msg.overwrite === true };
      this.uploads.set(id, state);
      if (msg.encoding !== undefined) {
        const transform = await this.plugins.first('transfer:decode', { encoding: msg.encoding, op });
        if (!transform) throw new FerryError('bad_message', `No plugin decodes ${quotePath(msg.encoding.slice(0, 40))}`);
        state.decoder = new DecodingWriter(upload, transform, msg.encoding);
      }
      if (resume) this.wire.send(id, { t: 'resume', offset: upload.offset, sha256: upload.prefixSha256 });
    } catch (err) {
      if (state) {
        this.uploads.delete(id);
        state.decoder?.destroy();
      }
      await upload?.abort(false).catch(() => {});
      if (op) this.plugins.notify('upload:after', op, outcomeOf(err));
      throw err;
    } finally {
      release();
    }
    return undefined;
  }

  /**
   * A storage refusal of an upload in the protocol's words (as it starts, or as it commits after deferred checks):
   * `exists` when the client asked to overwrite is `permission_denied` for an account that may not.
   */
  private uploadRefusal(err: unknown, path: string, overwriteAsked: boolean): unknown {
    if (err instanceof FerryError && err.code === 'exists') {
      if (overwriteAsked) {
        try {
          this.need('overwrite');
        } catch (denied) {
          return denied;
        }
      }
      return new FerryError('exists', `${quotePath(path)} exists (use overwrite to replace it)`);
    }
    if (err instanceof FerryError && err.code === 'is_a_directory') return new FerryError('is_a_directory', `${quotePath(path)} is a directory`);
    return err;
  }

  /** Tells the plugins once how an upload ended. */
  private uploadEnded(state: UploadState, outcome: Outcome): void {
    const op = state.op;
    if (!op) return;
    state.op = null;
    state.decoder?.destroy();
    this.plugins.notify('upload:after', op, outcome);
  }

  private async onFrom(id: number, msg: ClientMessageOf<'from'>): Promise<void> {
    if (this.refused.has(id)) return;
    const state = this.uploads.get(id);
    if (!state || !state.awaitingFrom) throw new FerryError('unexpected_message', `'from' for request ${id}, which is not waiting for it`);
    state.awaitingFrom = false;
    if (msg.offset === state.upload.offset) return;
    if (msg.offset === 0) return state.upload.restart();
    throw new FerryError('unexpected_message', `'from' offset ${msg.offset} is neither 0 nor the offered ${state.upload.offset}`);
  }

  private async onData(id: number, chunks: Buffer[]): Promise<void> {
    if (this.refused.has(id)) return;
    const state = this.uploads.get(id);
    if (!state || state.awaitingFrom) throw new FerryError('unexpected_message', `Data for request ${id}, which is not an upload in progress`);
    try {
      await (state.decoder ?? state.upload).write(chunks);
    } catch (err) {
      await this.failUpload(id, state, err);
    }
  }

  private async onEnd(id: number, msg: ClientMessageOf<'end'>): Promise<void> {
    if (this.refused.delete(id)) return;
    const state = this.uploads.get(id);
    if (!state || state.awaitingFrom || state.committing) throw new FerryError('unexpected_message', `'end' for request ${id}, which is not an upload in progress`);
    state.committing = true;
    const done = this.commit(id, state, msg)
      .catch((err: unknown) => this.wire.fail(err instanceof Error ? err : new Error(String(err))))
      .finally(() => this.commits.delete(id));
    this.commits.set(id, { path: samePath(state.path), done });
  }

  /** Verifies and places an upload, then answers; runs in the background (see waitForCommits). Never throws. */
  private async commit(id: number, state: UploadState, msg: ClientMessageOf<'end'>): Promise<void> {
    try {
      await state.decoder?.finish();
      const entry = await state.upload.commit(msg.sha256);
      this.uploads.delete(id);
      const durationMs = Date.now() - state.started;
      const resumedFrom = state.upload.offset;
      this.uploadEnded(state, { ok: true });
      this.wire.send(id, { t: 'ok', result: { size: entry.size, sha256: msg.sha256, resumedFrom, entry } });
      this.audit({ event: 'upload', path: state.path, bytes: entry.size, durationMs, sha256: msg.sha256, result: 'ok' });
      this.info(`UPLD ${escapeText(state.path, 200)}: received ${entry.size} B in ${durationMs} ms${resumedFrom ? ` (resumed at ${resumedFrom})` : ''}, sha256 verified`);
    } catch (err) {
      // commit() removes the partial itself on a mismatch; the id is finished either way (the client sent `end`).
      await this.failUpload(id, state, this.uploadRefusal(err, state.path, state.overwriteAsked), false);
    }
  }

  /**
   * Ends an upload with an error. `refuseLater`: the client may still be sending (its data frames and `end`
   * are then dropped until it cancels); false once the client has sent `end`.
   */
  private async failUpload(id: number, state: UploadState, err: unknown, refuseLater = true): Promise<void> {
    this.uploads.delete(id);
    if (refuseLater) this.refuse(id);
    await state.upload.abort(false).catch(() => {});
    const ferr = this.asFerryError(err, { t: 'put', path: state.path, size: 0 });
    this.uploadEnded(state, outcomeOf(ferr));
    this.wire.send(id, { t: 'error', code: ferr.code, message: ferr.message });
    this.audit({ event: 'upload', path: state.path, result: 'error', error: ferr.code });
    this.info(`UPLD ${escapeText(state.path, 200)}: ${ferr.code}: ${ferr.message}`);
  }

  private async onCancel(id: number): Promise<void> {
    if (this.refused.delete(id)) return;
    const up = this.uploads.get(id);
    if (up && !up.committing) {
      this.uploads.delete(id);
      await up.upload.abort(false).catch(() => {});
      this.uploadEnded(up, { ok: false, code: 'cancelled', message: 'Upload cancelled' });
      this.wire.send(id, { t: 'error', code: 'cancelled', message: 'Upload cancelled' });
      this.audit({ event: 'upload', path: up.path, result: 'error', error: 'cancelled' });
      return;
    }
    const down = this.downloads.get(id);
    if (down) down.cancelled = true;
    // Otherwise the request already finished: nothing to do.
  }

  // ---- downloads ---------------------------------------------------------------------------------

  private async onGet(id: number, msg: ClientMessageOf<'get'>, storage: Storage, started: number): Promise<undefined> {
    this.need('download');
    const release = this.reserveTransfer();
    let handle: Awaited<ReturnType<Storage['openRead']>>;
    try {
      handle = await storage.openRead(msg.path);
    } catch (err) {
      release();
      throw err;
    }
    const offset = msg.offset ?? 0;
    const op: DownloadOp = { ...this.actor(), path: msg.path, size: handle.size, offset };
    let encoded: EncodedStream | undefined;
    try {
      if (offset > handle.size) {
        throw new FerryError('size_mismatch', `Resume offset ${offset} is past the end of ${quotePath(msg.path)} (${handle.size} bytes)`);
      }
      await this.vetoed(this.plugins.has('download:before') && this.plugins.veto('download:before', op));
      const accept = (msg.accept ?? []).filter((e) => this.features.includes(`encoding:${e}`));
      if (accept.length > 0 && this.plugins.has('transfer:encode')) {
        const sample = await handle.read(0, Math.min(handle.size, 64 * 1024));
        encoded = await this.plugins.first('transfer:encode', { accept, op, path: msg.path, sample });
        if (encoded && !accept.includes(encoded.encoding)) throw new FerryError('internal', `A plugin chose encoding ${quotePath(encoded.encoding)}, which the client did not accept`);
      }
    } catch (err) {
      release();
      await handle.close();
      encoded?.stream.destroy();
      throw err;
    }
    const state: DownloadState = { cancelled: false };
    this.downloads.set(id, state);
    release();
    this.wire.send(id, { t: 'meta', size: handle.size, mtime: Math.floor(handle.mtime), ...(encoded ? { encoding: encoded.encoding } : {}) });
    const task = this.streamDownload(id, op, handle, state, started, encoded?.stream ?? null);
    this.streaming.add(task);
    void task.finally(() => this.streaming.delete(task));
    return undefined;
  }

  /**
   * Sends a file's bytes from `op.offset` (hashing it all from 0), through a plugin's encoding stream
   * when there is one, then `end` with the SHA-256 of the whole file.
   */
  private async streamDownload(
    id: number,
    op: DownloadOp,
    handle: Awaited<ReturnType<Storage['openRead']>>,
    state: DownloadState,
    started: number,
    encoder: NodeJS.ReadWriteStream | null,
  ): Promise<void> {
    const { path, offset } = op;
    const hash = createHash('sha256');
    const frame = Math.min(this.ctx.options.limits.maxData, READ_CHUNK);
    let position = 0;
    let encoderDone: Promise<unknown> = Promise.resolve();
    if (encoder) {
      encoder.on('data', (chunk: Buffer) => {
        for (let at = 0; at < chunk.length; at += frame) {
          if (!this.wire.sendData(id, chunk.subarray(at, at + frame))) {
            encoder.pause();
            void this.wire.drained().then(() => encoder.resume());
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
      for (let at = 0; at < bytes.length; at += frame) ok = this.wire.sendData(id, bytes.subarray(at, at + frame));
      if (!ok) await this.wire.drained();
    };
    // Chunks are read after HEADER_SIZE free bytes, so that a whole chunk goes out as one buffer (frame header
    // included), and the buffers come back for the next reads once the socket is done with them (fewer
    // allocations of 512 KiB, less garbage collection). Chunks given to an encoder, or sent in part, are not reused.
    const spare: Buffer[] = [];
    try {
      while (position < handle.size && !state.cancelled && !this.wire.isClosed) {
        // Sized for the file: a small file's download must not hold (and make the GC chase) a 512 KiB buffer.
        const buf = spare.pop() ?? Buffer.allocUnsafeSlow(HEADER_SIZE + Math.min(READ_CHUNK, handle.size));
        const got = await handle.readInto(buf.subarray(HEADER_SIZE, HEADER_SIZE + Math.min(READ_CHUNK, handle.size - position)), position);
        if (got === 0) break;
        const chunk = buf.subarray(HEADER_SIZE, HEADER_SIZE + got);
        hash.update(chunk);
        const from = Math.max(0, offset - position);
        if (from === 0 && !encoder && got <= frame) {
          const reuse = () => void (spare.length < 4 && spare.push(buf));
          if (!this.wire.sendFrame(id, buf.subarray(0, HEADER_SIZE + got), reuse)) await this.wire.drained();
        } else if (from < got) {
          await send(from === 0 ? chunk : chunk.subarray(from));
        }
        position += got;
      }
      if (encoder && !state.cancelled && !this.wire.isClosed) {
        encoder.end();
        await encoderDone;
      }
      if (this.wire.isClosed) {
        this.plugins.notify('download:after', op, { ok: false, code: 'connection_lost', message: 'The connection closed' });
        return;
      }
      if (state.cancelled) {
        this.wire.send(id, { t: 'error', code: 'cancelled', message: 'Download cancelled' });
        this.audit({ event: 'download', path, result: 'error', error: 'cancelled' });
        this.plugins.notify('download:after', op, { ok: false, code: 'cancelled', message: 'Download cancelled' });
        return;
      }
      if (position !== handle.size) throw new FerryError('internal', `${quotePath(path)} changed while it was being sent`);
      const sha256 = hash.digest('hex');
      this.wire.send(id, { t: 'end', sha256 });
      const durationMs = Date.now() - started;
      this.audit({ event: 'download', path, bytes: handle.size, durationMs, sha256, result: 'ok' });
      this.plugins.notify('download:after', op, { ok: true });
      this.info(`DWLD ${escapeText(path, 200)}: sent ${handle.size - offset} B in ${durationMs} ms${offset ? ` (resumed at ${offset})` : ''}`);
    } catch (err) {
      const ferr = this.asFerryError(err, { t: 'get', path });
      this.wire.send(id, { t: 'error', code: ferr.code, message: ferr.message });
      this.audit({ event: 'download', path, result: 'error', error: ferr.code });
      this.plugins.notify('download:after', op, outcomeOf(ferr));
    } finally {
      (encoder as unknown as { destroy?: () => void } | null)?.destroy?.();
      this.downloads.delete(id);
      await handle.close().catch(() => {});
    }
  }

  // ---- end of the connection ---------------------------------------------------------------------

  private async onClose(err: Error | null): Promise<void> {
    this.stage = 'closed';
    for (const t of this.timers) clearTimeout(t);
    const entry = this.userEntry();
    if (entry) {
      entry.sessions.delete(this);
      if (entry.sessions.size === 0 && entry.pending === 0) USERS.get(this.ctx)?.delete(this.account?.name ?? '');
    }
    this.queue.length = 0;
    for (const d of this.downloads.values()) d.cancelled = true;
    const lost: Outcome = { ok: false, code: 'connection_lost', message: 'The connection closed during the upload' };
    const aborts = [...this.uploads.values()].filter((u) => !u.committing).map((u) => {
      this.uploadEnded(u, lost);
      return u.upload.abort(true).catch(() => {});
    });
    const interrupted = [...this.uploads.values()].filter((u) => !u.committing).length;
    this.uploads.clear();
    await Promise.all([...aborts, ...[...this.commits.values()].map((c) => c.done)]);
    this.info(`Disconnected${describeClose(err)}${interrupted ? ` (${interrupted} upload(s) interrupted, kept for resume)` : ''}`);
    this.closedResolve();
  }
}

/** SHA-256 (hex) of a stored file, read in chunks. */
async function hashFile(storage: Storage, path: string): Promise<string> {
  const handle = await storage.openRead(path);
  try {
    const hash = createHash('sha256');
    for (let position = 0; position < handle.size; ) {
      const buf = await handle.read(position, READ_CHUNK);
      if (buf.length === 0) break;
      hash.update(buf);
      position += buf.length;
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

/** A path as the storage will see it, so that `./a` and `a` compare equal; an invalid path as it is. */
function samePath(path: string): string {
  try {
    return joinVirtual(parseVirtualPath(path));
  } catch {
    return path;
  }
}

/** A plugin's refusal as the request's error: its code if it is one of ours, its message escaped (plugins may echo anything). */
function refusalOf(deny: Deny, fallback: ErrorCode = 'denied'): FerryError {
  return new FerryError(isErrorCode(deny.deny) ? deny.deny : fallback, escapeText(String(deny.message), 500));
}

function outcomeOf(err: unknown): Outcome {
  if (err instanceof FerryError) return { ok: false, code: err.code, message: err.message };
  return { ok: false, code: 'internal', message: err instanceof Error ? err.message : String(err) };
}

/** Text recorded as it came (the audit log is JSON, rendered escaped), but bounded. */
function capped(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

function describe(msg: ClientMessage): string {
  switch (msg.t) {
    case 'put':
    case 'get':
    case 'list':
    case 'stat':
    case 'delete':
    case 'mkdir':
      return escapeText(msg.path, 200);
    case 'rename':
      return `${escapeText(msg.from, 200)} -> ${escapeText(msg.to, 200)}`;
    case 'signup':
    case 'login':
      return word(msg.user);
    default:
      return '';
  }
}

function describeClose(err: Error | null): string {
  if (!err) return '';
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNRESET') return ' (connection reset by peer)';
  if (code === 'EPIPE') return ' (broken pipe)';
  if (err instanceof FerryError) return ` (${err.code}: ${escapeText(err.message, 300)})`;
  return ` (${escapeText(err.message, 300)})`;
}
