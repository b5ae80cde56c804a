import { X509Certificate } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import { join, resolve } from 'node:path';
import tls from 'node:tls';
import { AuditLog, type AuditStore } from '../audit/log.ts';
import { LoginThrottle, RateLimit } from '../auth/throttle.ts';
import { UserStore } from '../auth/users.ts';
import { DbAuditLog, DbLoginGate, DbNameLeases, DbRateGate, DbTransferSlots, DbUserStore, loadOrCreateSharedIdentity, ServerPresence, type Database } from '../db/mod.ts';
import { canonicalIp } from '../core/address.ts';
import { FerryError } from '../core/errors.ts';
import { escapeText } from '../core/text.ts';
import { PluginHost } from '../plugin/host.ts';
import { LocalDiskDriver } from '../storage/local/mod.ts';
import { parseS3Url, S3Driver } from '../storage/s3/mod.ts';
import type { StorageDriver } from '../storage/storage.ts';
import { loadCertificateFiles, loadOrCreateIdentity } from '../tls/identity.ts';
import { VERSION } from '../version.ts';
import { consoleLog, type ServerLog } from './console.ts';
import { recordAudit, type ServerContext } from './context.ts';
import { FreeSpace } from './free-space.ts';
import { DEFAULT_SERVER_OPTIONS, type ServerOptions } from './options.ts';
import { ProxyAllowList, readProxyHeader, type Peer } from './proxy-protocol.ts';
import { Session } from './session/session.ts';
import { TransferSlots } from './session/transfers.ts';
import { refuseRaw, WebFront } from '../web/front.ts';
import { DownloadLinks } from '../web/links.ts';
import { auditTime, type AuditEvent } from '../audit/mod.ts';
import { formatAddress } from '../core/address.ts';

/** TLS 1.3 suites, fastest first on CPUs with AES instructions. */
export const TLS_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';

export interface ServerInfo {
  host: string;
  port: number;
  dataDir: string;
  /** `SHA256:...`, or null when running without TLS. */
  fingerprint: string | null;
  /** Where the files are: null for `<dataDir>/homes`, else the object store (`s3://bucket/prefix at endpoint`). */
  objectStore: string | null;
  /** The shared database (without its password), or null for the data directory's own files. */
  database: string | null;
  /** Whether the page answers browsers on this port (HTTPS). */
  web: boolean;
  /** `--cert`: the file, its names, issuer and end of validity, for the banner; null for ferry's own identity. */
  certificate: string | null;
  identityCreated: boolean;
}

export class FerryServer {
  readonly options: ServerOptions;
  private readonly log: ServerLog;
  private listener: net.Server | null = null;
  private readonly sessions = new Set<Session>();
  private readonly perAddress = new Map<string, number>();
  private audit: AuditStore | null = null;
  private presence: ServerPresence | null = null;
  private web: WebFront | null = null;
  /** Browsers' HTTPS connections (their WebSocket sessions are in `sessions` too). */
  private readonly webSockets = new Set<net.Socket>();
  private upkeep: NodeJS.Timeout | null = null;
  private stopping = false;
  private sweeper: NodeJS.Timeout | null = null;
  private objectStore: S3Driver | null = null;
  private storage: StorageDriver | null = null;
  /** The balancers allowed to send a PROXY header (--proxy-protocol), or null: none is read. */
  private readonly proxyAllow: ProxyAllowList | null;

  private readonly plugins: PluginHost;

  /**
   * `database`: the shared database of several servers (opened and migrated by the caller, who also closes it); null
   * keeps everything in the data directory.
   */
  constructor(
    options: Partial<ServerOptions> = {},
    log: ServerLog = consoleLog(),
    plugins?: PluginHost,
    private readonly database: Database | null = null,
  ) {
    this.options = { ...DEFAULT_SERVER_OPTIONS, ...options, limits: { ...DEFAULT_SERVER_OPTIONS.limits, ...options.limits } };
    this.log = log;
    this.plugins = plugins ?? PluginHost.empty({ info: log.info, warn: log.warn, error: log.warn });
    this.proxyAllow = this.options.proxyProtocol.length > 0 ? new ProxyAllowList(this.options.proxyProtocol) : null;
  }

  async start(): Promise<ServerInfo> {
    const dataDir = resolve(this.options.dataDir);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const db = this.database;
    const { certificate } = this.options;
    const identity = this.options.insecure
      ? null
      : certificate
        ? await loadCertificateFiles(certificate.certFile, certificate.keyFile)
        : db
          ? await loadOrCreateSharedIdentity(db)
          : await loadOrCreateIdentity(join(dataDir, 'identity'));
    // With a shared database this server is one of several: it says so (ServerPresence), and claims an object key for
    // an upload across all of them (DbNameLeases).
    const presence = db ? (this.presence = await ServerPresence.join(db, (m) => this.log.warn(m))) : null;
    const leases = db ? new DbNameLeases(db, db.serverId) : null;
    if (presence && leases) presence.every(() => leases.retry());
    let storage: StorageDriver;
    if (this.options.objectStore !== null) {
      const { url, endpoint, region } = this.options.objectStore;
      const driver = new S3Driver(parseS3Url(url), { ...(endpoint !== undefined ? { endpoint } : {}), ...(region !== undefined ? { region } : {}) }, leases);
      try {
        await driver.check();
      } catch (err) {
        driver.close();
        await this.presence?.leave();
        throw err;
      }
      this.objectStore = driver;
      storage = driver;
    } else {
      storage = new LocalDiskDriver(dataDir);
    }
    this.storage = storage;
    const swept = await storage.sweepPartials(this.options.partialMaxAgeMs);
    if (swept > 0) this.log.info(`Removed ${swept} stale partial upload(s)`);
    this.sweeper = setInterval(() => {
      storage.sweepPartials(this.options.partialMaxAgeMs).catch((err: unknown) => this.log.warn(`partial sweep failed: ${String(err)}`));
    }, 3600_000);
    this.sweeper.unref();
    let shared: { throttle: DbLoginGate; signups: DbRateGate; slots: DbTransferSlots } | null = null;
    if (db && presence) {
      shared = {
        throttle: new DbLoginGate(db),
        signups: new DbRateGate(db, 'signup', this.options.signupsPerAddressPerHour, 3600_000),
        slots: new DbTransferSlots(db, presence.id),
      };
    }
    this.audit = db ? new DbAuditLog(db) : new AuditLog(dataDir);
    const transfers = new TransferSlots(this.options.maxTransfersPerUser, shared?.slots ?? null);
    if (shared && this.presence) {
      const { throttle, signups } = shared;
      this.presence.every(() => Promise.all([throttle.prune(), signups.prune()]));
      // This server's transfer counts, as they fall, reach the other servers within a second (one round at a time:
      // a database that is away is reported by the presence beat, not by a pile of waiting rounds).
      let publishing = false;
      this.upkeep = setInterval(() => {
        if (publishing) return;
        publishing = true;
        transfers
          .publish()
          .catch(() => {})
          .finally(() => (publishing = false));
      }, 1000);
      this.upkeep.unref();
    }
    const links = identity && this.options.web ? new DownloadLinks() : null;
    const ctx: ServerContext = {
      options: { ...this.options, dataDir },
      links,
      users: db ? new DbUserStore(db) : new UserStore(join(dataDir, 'users.json')),
      throttle: shared?.throttle ?? new LoginThrottle(),
      transfers,
      signups: shared?.signups ?? new RateLimit({ limit: this.options.signupsPerAddressPerHour, windowMs: 3600_000 }),
      audit: this.audit,
      storage,
      // An object store has no free space to check (its own limits refuse what does not fit).
      freeSpace: new FreeSpace(dataDir, { unchecked: this.objectStore !== null }),
      log: this.log,
      plugins: this.plugins,
      agent: `ferry/${VERSION}`,
      features: ['resume', 'too_large', 'unavailable', 'bundle', ...(links ? ['link'] : []), ...this.plugins.features],
    };

    // Behind a balancer (--proxy-protocol) a connection's real client is in the PROXY header read before TLS; it is
    // known here by the balancer's address and port, which the TLS socket over the same connection shares.
    const proxied = new Map<string, Peer | null>();
    const keyOf = (socket: net.Socket) => `${socket.remoteAddress}:${socket.remotePort}`;
    const peerOf = (socket: net.Socket) => proxied.get(keyOf(socket)) ?? undefined;
    // The page (src/web) on the same port: a TLS client that chose HTTP by ALPN gets it; its WebSocket carries a session.
    const web =
      links !== null
        ? (this.web = new WebFront({
            links,
            openFile: (target) => storage.forUser(target.user).openRead(target.path),
            downloaded: (target, peer, outcome) => {
              const event: AuditEvent = {
                time: auditTime(),
                event: 'download',
                user: target.user,
                address: formatAddress(peer.ip, peer.port),
                result: outcome.error === undefined ? 'ok' : 'error',
                path: target.path,
                bytes: outcome.bytes,
                durationMs: Math.round(outcome.ms),
                ...(outcome.error !== undefined ? { error: outcome.error } : {}),
                detail: 'by a link from the page',
              };
              recordAudit(ctx, event);
              this.log.info(`[${formatAddress(peer.ip, peer.port)} ${escapeText(target.user, 64)}] DWLD ${escapeText(target.path, 200)}: ${outcome.error === undefined ? `sent ${outcome.bytes} B by a link` : `stopped after ${outcome.bytes} B (${outcome.error})`}`);
            },
            maxData: this.options.limits.maxData,
            headTimeoutMs: this.options.handshakeTimeoutMs,
            idleTimeoutMs: this.options.idleTimeoutMs,
            log: (m) => this.log.info(m),
            openSession: (stream, peer) => this.startSession(Session.overSocket(stream, ctx, peer), canonicalIp(peer.ip)),
          }))
        : null;
    const onSocket = (socket: net.Socket) => {
      if (web && (socket as tls.TLSSocket).alpnProtocol === 'http/1.1') this.acceptWeb(socket, web, peerOf(socket));
      else this.accept(socket, ctx, peerOf(socket));
    };
    const tlsServer = identity
      ? tls.createServer(
          {
            key: identity.key,
            cert: identity.cert,
            minVersion: 'TLSv1.3',
            ciphers: TLS_CIPHERS,
            handshakeTimeout: this.options.handshakeTimeoutMs,
            // `ferry/1`, or no ALPN at all: the protocol. `http/1.1`: the page.
            ALPNProtocols: web ? ['ferry/1', 'http/1.1'] : ['ferry/1'],
          },
          onSocket,
        )
      : null;
    tlsServer?.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      // Behind a balancer: its health checks (a PROXY LOCAL header, then closed), and connections gone before they
      // could be named, say nothing worth a line.
      if (this.proxyAllow !== null && (socket.remoteAddress === undefined || (proxied.get(keyOf(socket)) === null && this.proxyAllow.allows(socket.remoteAddress)))) return;
      const host = peerOf(socket)?.ip ?? canonicalIp(socket.remoteAddress ?? '?');
      this.log.info(`[${host}] TLS handshake failed: ${escapeText((err as NodeJS.ErrnoException).code ?? err.message, 200)}`);
    });
    const allow = this.proxyAllow;
    const listener: net.Server =
      allow === null
        ? (tlsServer ?? net.createServer(onSocket))
        : net.createServer((raw) => {
            raw.on('error', () => {});
            if (raw.remoteAddress === undefined) return void raw.destroy(); // gone before it was looked at (a quick health check)
            const key = keyOf(raw);
            const host = canonicalIp(raw.remoteAddress ?? '?');
            readProxyHeader(raw, allow.allows(host), this.options.handshakeTimeoutMs).then(
              (peer) => {
                proxied.set(key, peer);
                raw.once('close', () => proxied.delete(key));
                const plain = () => {
                  onSocket(raw);
                  // readProxyHeader left it paused, so that nothing it gave back was lost; the session reads it now.
                  if (!raw.destroyed) raw.resume();
                };
                if (tlsServer) tlsServer.emit('connection', raw);
                else if (peer !== null || raw.readableLength > 0) plain();
                // The balancer's own connection (a LOCAL header): a health check closes without sending a byte, and
                // is not logged, as it is not with TLS (where it never finishes a handshake).
                else void firstBytes(raw, this.options.handshakeTimeoutMs).then((came) => (came ? plain() : raw.destroy()));
              },
              (err: Error) => {
                this.log.info(`[${host}] refused: ${err.message}`);
                raw.destroy();
              },
            );
          });
    listener.on('error', (err) => this.log.warn(`listener error: ${err.message}`));
    this.listener = listener;
    await listen(listener, this.options.port, this.options.host);
    const address = listener.address() as net.AddressInfo;
    await this.plugins.notifyAndWait('server:start', { host: address.address, port: address.port, dataDir });
    return {
      host: address.address,
      port: address.port,
      dataDir,
      fingerprint: identity?.fingerprint ?? null,
      objectStore: this.objectStore?.description ?? null,
      database: db?.where ?? null,
      identityCreated: identity?.created ?? false,
      web: web !== null,
      certificate: certificate && identity ? describeCertificate(certificate.certFile, identity.cert) : null,
    };
  }

  /** Counts a connection from `host` until it closes; returns how many that host has now. */
  private countIn(socket: net.Socket, host: string): number {
    const count = (this.perAddress.get(host) ?? 0) + 1;
    this.perAddress.set(host, count);
    socket.once('close', () => {
      const left = (this.perAddress.get(host) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(host);
      else this.perAddress.set(host, left);
    });
    return count;
  }

  /** A connection, from `peer` (the real client behind a balancer) or from the socket's own address. */
  private accept(socket: net.Socket, ctx: ServerContext, peer?: Peer): void {
    socket.on('error', () => {}); // reported by the session; never an uncaught exception
    const host = canonicalIp(peer?.ip ?? socket.remoteAddress ?? '?');
    const count = this.countIn(socket, host);
    const session = Session.overSocket(socket, ctx, peer);
    this.startSession(session, host, count);
  }

  /** A session (over a socket, or a page's WebSocket) joins the server, or is refused when over a limit. */
  private startSession(session: Session, host: string, count = 0): void {
    if (this.stopping) {
      session.terminate(new FerryError('shutting_down', 'The server is stopping'));
      return;
    }
    if (this.sessions.size >= this.options.maxConnections || count > this.options.maxConnectionsPerAddress) {
      this.log.info(`[${host}] refused: too many connections`);
      session.terminate(new FerryError('too_many_connections', 'Too many connections; try again later'));
      return;
    }
    this.sessions.add(session);
    void session.closed.then(() => this.sessions.delete(session));
  }

  /** A browser's connection (TLS with ALPN http/1.1): the same caps as the protocol's, counted as connections. */
  private acceptWeb(socket: net.Socket, web: WebFront, peer?: Peer): void {
    socket.on('error', () => {});
    const host = canonicalIp(peer?.ip ?? socket.remoteAddress ?? '?');
    const count = this.countIn(socket, host);
    if (this.stopping || this.webSockets.size + this.sessions.size >= this.options.maxConnections || count > this.options.maxConnectionsPerAddress) {
      this.log.info(`[${host}] refused: too many connections`);
      refuseRaw(socket, 503, { 'Retry-After': '10' });
      return;
    }
    this.webSockets.add(socket);
    socket.once('close', () => this.webSockets.delete(socket));
    web.accept(socket, { ip: host, port: peer?.port ?? socket.remotePort ?? 0 });
  }

  /**
   * A user's files as the server's storage lists them, page by page (PluginContext.homeFiles: how a plugin sums
   * up usage when the files are in an object store). The server must have started.
   */
  async *homeFiles(user: string): AsyncIterable<Array<{ path: string; size: number }>> {
    const driver = this.storage;
    if (driver === null) throw new Error('The server has not started: no storage yet');
    for await (const page of driver.forUser(user).listTree('')) {
      yield page.filter((e) => e.type === 'file').map((e) => ({ path: e.name, size: e.size }));
    }
  }

  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Stops accepting, ends every session (in-flight uploads are kept as partials for resume), closes logs. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.sweeper) clearInterval(this.sweeper);
    const listener = this.listener;
    const closing = listener ? new Promise<void>((r) => listener.close(() => r())) : Promise.resolve();
    for (const s of this.sessions) s.terminate(new FerryError('shutting_down', 'The server is stopping'));
    this.web?.close();
    await Promise.race([
      Promise.all([...this.sessions].map((s) => s.closed)),
      new Promise((r) => setTimeout(r, 3000).unref()),
    ]);
    await closing;
    await this.plugins.notifyAndWait('server:stop');
    await this.audit?.close();
    if (this.upkeep) clearInterval(this.upkeep);
    await this.presence?.leave();
    this.objectStore?.close();
  }
}

/** `FILE (for NAMES, issued by ISSUER, valid until DATE)`, as far as the certificate can be read. */
function describeCertificate(file: string, pem: string): string {
  try {
    const x = new X509Certificate(pem);
    const cn = (text: string) => /CN=([^\n,]+)/.exec(text)?.[1] ?? text.split('\n')[0] ?? '?';
    const names = x.subjectAltName?.replace(/DNS:|IP Address:/g, '') ?? cn(x.subject);
    return `${file} (for ${escapeText(names, 200)}, issued by ${escapeText(cn(x.issuer), 100)}, valid until ${new Date(x.validTo).toISOString().slice(0, 10)})`;
  } catch {
    return file;
  }
}

/**
 * Listens on `host`, or, when none is given, on every address: a dual-stack socket on `::` (IPv4 clients
 * arrive as ::ffff:a.b.c.d, which sessions show as a.b.c.d), falling back to `0.0.0.0` where the host has no
 * IPv6 at all.
 */
async function listen(listener: net.Server, port: number, host: string | null): Promise<void> {
  const attempt = (options: net.ListenOptions) =>
    new Promise<void>((resolveListen, reject) => {
      listener.once('error', reject);
      listener.listen(options, () => {
        listener.off('error', reject);
        resolveListen();
      });
    });
  if (host !== null) return attempt({ port, host });
  try {
    await attempt({ port, host: '::', ipv6Only: false });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL' && code !== 'EINVAL') throw err;
    await attempt({ port, host: '0.0.0.0' });
  }
}

/** Resolves true once `socket` has bytes to read (given back to it, paused), false when it closed or `ms` passed first. */
function firstBytes(socket: net.Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (chunk: Buffer | null): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.pause();
      if (chunk !== null) socket.unshift(chunk);
      resolve(chunk !== null);
    };
    const onData = (chunk: Buffer): void => done(chunk);
    const onClose = (): void => done(null);
    const timer = setTimeout(() => done(null), ms);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}
