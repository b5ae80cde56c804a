import type { AuditEvent } from '../../audit/event.ts';
import { auditTime } from '../../audit/log.ts';
import type { Account } from '../../auth/types.ts';
import { canonicalIp, formatAddress } from '../../core/address.ts';
import { FerryError } from '../../core/errors.ts';
import { escapeText, word } from '../../core/text.ts';
import { parseClientMessage } from '../../protocol/messages.ts';
import { Wire, type ByteStream } from '../../transport/wire.ts';
import { recordAudit, type ServerContext } from '../context.ts';
import { PutBundles } from './putmany.ts';
import { GetBundles } from './getmany.ts';
import { Downloads } from './download.ts';
import { dispatch, type Conn } from './handlers.ts';
import { Ingress } from './ingress.ts';
import { refusalOf } from './operation.ts';
import type { LoggedIn, SessionTransport, Stage } from './scope.ts';
import { Uploads } from './upload.ts';

/** Paths in audit events are cut to this many characters (a valid path is at most 4096 bytes). */
const MAX_AUDIT_PATH = 4096;

let nextSessionNumber = 1;

/**
 * One client connection, from its first byte to its close: the handshake and log-in timers, a plugin's verdict
 * on the connection, the ingress queue (ingress.ts) that hands requests in order to the handler table
 * (handlers.ts), the transfers in flight (upload.ts, download.ts), and what happens when it ends.
 *
 * The session speaks to its client through a `SessionTransport`: `Session.overSocket` glues one to a socket with
 * the frame codec (transport/wire.ts); a test, or another front end, may give it any other.
 */
export class Session implements Conn {
  readonly number = nextSessionNumber++;
  readonly address: string;
  readonly host: string;
  readonly ctx: ServerContext;
  readonly transport: SessionTransport;
  readonly uploads: Uploads;
  readonly putBundles: PutBundles;
  readonly getBundles: GetBundles;
  readonly downloads: Downloads;
  readonly #ingress: Ingress;
  #stage: Stage = 'hello';
  #user: LoggedIn | null = null;
  #features: readonly string[] = [];
  readonly #timers: NodeJS.Timeout[] = [];
  #closedResolve!: () => void;
  /** Resolves once the session has ended and every commit under way has finished. */
  readonly closed = new Promise<void>((resolve) => (this.#closedResolve = resolve));

  /**
   * A session over a TLS or TCP socket, or another byte stream (a WebSocket's): the ferry frames (Wire), the idle
   * time-out on a socket (a stream's owner keeps its own); `peer`: the real client behind a balancer.
   */
  static overSocket(socket: ByteStream & { remoteAddress?: string | undefined; remotePort?: number | undefined; setTimeout?: (ms: number, cb: () => void) => unknown }, ctx: ServerContext, peer?: { ip: string; port: number }): Session {
    let session: Session | null = null;
    const wire = new Wire(
      socket,
      {
        onMessage: (id, body) => session?.receiveMessage(id, body),
        onData: (id, chunk) => session?.receiveData(id, [chunk]),
        onClose: (err) => void session?.ended(err),
      },
      ctx.options.limits,
    );
    session = new Session(wire, peer ?? { ip: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 }, ctx);
    socket.setTimeout?.(ctx.options.idleTimeoutMs, () => session?.timeout('idle'));
    return session;
  }

  constructor(transport: SessionTransport, peer: { ip: string; port: number }, ctx: ServerContext) {
    this.ctx = ctx;
    this.transport = transport;
    this.host = canonicalIp(peer.ip);
    this.address = formatAddress(this.host, peer.port);
    this.#ingress = new Ingress({
      request: (id, msg) => dispatch(this, id, msg),
      data: (id, chunks, link) => this.#data(id, chunks, link),
      fail: (err) => this.transport.fail(err),
      pause: () => this.#flow(true),
      resume: () => this.#flow(false),
      isReady: () => this.#stage === 'ready',
      isClosed: () => this.#stage === 'closed',
    });
    this.uploads = new Uploads(this, this.#ingress);
    this.putBundles = new PutBundles(this, this.#ingress);
    this.getBundles = new GetBundles(this, this.#ingress);
    this.downloads = new Downloads(this);
    const { handshakeTimeoutMs, authTimeoutMs } = ctx.options;
    this.#timers.push(setTimeout(() => this.#stage === 'hello' && this.timeout('handshake'), handshakeTimeoutMs));
    this.#timers.push(setTimeout(() => this.#stage !== 'ready' && this.timeout('log-in'), authTimeoutMs));
    this.info('Connected');
    if (ctx.plugins.has('connection:open')) {
      this.#ingress.hold(
        ctx.plugins.veto('connection:open', { address: this.address, host: this.host }).then((deny) => {
          if (!deny) return true;
          const refusal = refusalOf(deny);
          this.info(`Refused by a plugin: ${refusal.message}`);
          this.transport.fail(refusal);
          return false;
        }),
      );
    }
  }

  get stage(): Stage {
    return this.#stage;
  }

  get features(): readonly string[] {
    return this.#features;
  }

  get user(): LoggedIn | null {
    return this.#user;
  }

  /** Uploads and downloads in flight (the per-user transfer limit counts them). */
  get transfersInFlight(): number {
    return this.uploads.count + this.putBundles.count + this.downloads.count + this.getBundles.count;
  }

  /** A control message from the client; throws the FerryError of a malformed one (the transport ends the connection). */
  receiveMessage(id: number, body: Buffer): void {
    this.#ingress.enqueue({ kind: 'msg', id, msg: parseClientMessage(body), bytes: body.length });
  }

  /** A piece of an upload's bytes from the client (a DATA frame, or an HTTPS PUT to an upload link). */
  receiveData(id: number, chunks: readonly Buffer[], link = false): void {
    let bytes = 0;
    for (const c of chunks) bytes += c.length;
    this.#ingress.enqueue({ kind: 'data', id, chunks, bytes, ...(link ? { link: true as const } : {}) });
  }

  /** Runs `run` for request `id` once everything queued before it is done (nothing if the session has closed). */
  afterQueued(id: number, run: () => Promise<void>): void {
    this.#ingress.enqueue({ kind: 'after', id, run, bytes: 0 });
  }

  readonly #flowListeners = new Set<(paused: boolean) => void>();
  #paused = false;

  /** Told when this session stops taking bytes (true) and takes them again (false); returns its unsubscribe. */
  onFlow(listener: (paused: boolean) => void): () => void {
    this.#flowListeners.add(listener);
    if (this.#paused) listener(true);
    return () => this.#flowListeners.delete(listener);
  }

  #flow(paused: boolean): void {
    this.#paused = paused;
    if (paused) this.transport.pause();
    else this.transport.resume();
    for (const l of this.#flowListeners) l(paused);
  }

  /** Data frames for request `id`: an upload's bytes, or a bundle's records. */
  #data(id: number, chunks: Buffer[], link: boolean): Promise<void> {
    if (link) return this.uploads.data(id, chunks, true);
    if (this.putBundles.owns(id)) return this.putBundles.data(id, chunks);
    if (this.getBundles.owns(id)) return this.getBundles.data(id, chunks);
    return this.uploads.data(id, chunks);
  }

  /** Ends the session from the server side with a final error frame (shutdown, connection caps). */
  terminate(error: FerryError): void {
    this.transport.fail(error);
  }

  timeout(what: string): void {
    if (this.#stage === 'closed') return;
    this.info(`Closing: ${what} timeout`);
    this.transport.fail(new FerryError('timeout', `No ${what} within the time allowed`));
  }

  info(line: string): void {
    this.ctx.log.info(`[#${this.number} ${this.address}${this.#user ? ` ${word(this.#user.account.name)}` : ''}] ${line}`);
  }

  problem(err: unknown, request: string): FerryError {
    if (err instanceof FerryError) {
      // A client that did not negotiate `unavailable` gets the retryable code it knows.
      return err.code === 'unavailable' && !this.#features.includes('unavailable') ? new FerryError('internal', err.message) : err;
    }
    this.ctx.log.warn(`[#${this.number}] internal error in '${request}': ${escapeText(err instanceof Error ? (err.stack ?? err.message) : String(err), 4000)}`);
    return new FerryError('internal', 'The server hit an unexpected error; it has been logged');
  }

  audit(event: Omit<AuditEvent, 'time' | 'user' | 'address'> & { user?: string }): void {
    const full: AuditEvent = { time: auditTime(), user: this.#user?.account.name ?? '?', address: this.address, ...event };
    // What a client sent is recorded as it came (the log is JSON; RDLOG renders it escaped), but bounded: one
    // event must always fit in a reply page.
    full.user = capped(full.user, 64);
    if (full.path !== undefined) full.path = capped(full.path, MAX_AUDIT_PATH);
    if (full.to !== undefined) full.to = capped(full.to, MAX_AUDIT_PATH);
    recordAudit(this.ctx, full);
  }

  welcomed(features: readonly string[]): void {
    this.#features = features;
    this.#stage = 'auth';
  }

  becomeUser(account: Account): void {
    this.#user = { account, storage: this.ctx.storage.forUser(account.name) };
    this.#stage = 'ready';
    this.ctx.transfers.join(account.name, this);
  }

  reserveTransfer(): Promise<() => void> {
    const user = this.#user;
    if (user === null) throw new FerryError('auth_required', 'Log in first (LOGIN or SIGNUP)');
    return this.ctx.transfers.reserve(user.account.name);
  }

  close(): void {
    this.#stage = 'closed';
    this.transport.end();
  }

  /** The transport closed (`err` set when it ended badly): everything in flight stops; uploads keep their partials. */
  async ended(err: Error | null): Promise<void> {
    this.#stage = 'closed';
    for (const t of this.#timers) clearTimeout(t);
    if (this.#user) this.ctx.transfers.leave(this.#user.account.name, this);
    this.#ingress.clear();
    this.downloads.close();
    this.putBundles.close();
    this.getBundles.close();
    const interrupted = await this.uploads.close();
    await this.#ingress.committing;
    this.info(`Disconnected${describeClose(err)}${interrupted ? ` (${interrupted} upload(s) interrupted, kept for resume)` : ''}`);
    this.#closedResolve();
  }
}

/** Text recorded as it came (the audit log is JSON, rendered escaped), but bounded. */
function capped(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

function describeClose(err: Error | null): string {
  if (!err) return '';
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNRESET') return ' (connection reset by peer)';
  if (code === 'EPIPE') return ' (broken pipe)';
  if (err instanceof FerryError) return ` (${err.code}: ${escapeText(err.message, 300)})`;
  return ` (${escapeText(err.message, 300)})`;
}
