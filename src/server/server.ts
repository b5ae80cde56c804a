import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import { join, resolve } from 'node:path';
import tls from 'node:tls';
import { AuditLog } from '../audit/log.ts';
import { LoginThrottle, RateLimit } from '../auth/throttle.ts';
import { UserStore } from '../auth/users.ts';
import { FerryError } from '../protocol/mod.ts';
import { PluginHost } from '../plugin/host.ts';
import { LocalDiskDriver } from '../storage/local.ts';
import { loadOrCreateIdentity } from '../tls/identity.ts';
import { VERSION } from '../version.ts';
import { consoleLog, type ServerLog } from './console.ts';
import type { ServerContext } from './context.ts';
import { FreeSpace } from './free-space.ts';
import { DEFAULT_SERVER_OPTIONS, type ServerOptions } from './options.ts';
import { Session } from './session.ts';

/** TLS 1.3 suites, fastest first on CPUs with AES instructions. */
export const TLS_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';

export interface ServerInfo {
  host: string;
  port: number;
  dataDir: string;
  /** `SHA256:...`, or null when running without TLS. */
  fingerprint: string | null;
  identityCreated: boolean;
}

export class FerryServer {
  readonly options: ServerOptions;
  private readonly log: ServerLog;
  private listener: net.Server | null = null;
  private readonly sessions = new Set<Session>();
  private readonly perAddress = new Map<string, number>();
  private audit: AuditLog | null = null;
  private stopping = false;
  private sweeper: NodeJS.Timeout | null = null;

  private readonly plugins: PluginHost;

  constructor(options: Partial<ServerOptions> = {}, log: ServerLog = consoleLog(), plugins?: PluginHost) {
    this.options = { ...DEFAULT_SERVER_OPTIONS, ...options, limits: { ...DEFAULT_SERVER_OPTIONS.limits, ...options.limits } };
    this.log = log;
    this.plugins = plugins ?? PluginHost.empty({ info: log.info, warn: log.warn, error: log.warn });
  }

  async start(): Promise<ServerInfo> {
    const dataDir = resolve(this.options.dataDir);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const identity = this.options.insecure ? null : await loadOrCreateIdentity(join(dataDir, 'identity'));
    const storage = new LocalDiskDriver(dataDir);
    const swept = await storage.sweepPartials(this.options.partialMaxAgeMs);
    if (swept > 0) this.log.info(`Removed ${swept} stale partial upload(s)`);
    this.sweeper = setInterval(() => {
      storage.sweepPartials(this.options.partialMaxAgeMs).catch((err: unknown) => this.log.warn(`partial sweep failed: ${String(err)}`));
    }, 3600_000);
    this.sweeper.unref();
    this.audit = new AuditLog(dataDir);
    const ctx: ServerContext = {
      options: { ...this.options, dataDir },
      users: new UserStore(join(dataDir, 'users.json')),
      throttle: new LoginThrottle(),
      signups: new RateLimit({ limit: this.options.signupsPerAddressPerHour, windowMs: 3600_000 }),
      audit: this.audit,
      storage,
      freeSpace: new FreeSpace(dataDir),
      log: this.log,
      plugins: this.plugins,
      agent: `ferry/${VERSION}`,
      features: ['resume', ...this.plugins.features],
    };

    const onSocket = (socket: net.Socket) => this.accept(socket, ctx);
    const listener = identity
      ? tls.createServer(
          {
            key: identity.key,
            cert: identity.cert,
            minVersion: 'TLSv1.3',
            ciphers: TLS_CIPHERS,
            handshakeTimeout: this.options.handshakeTimeoutMs,
          },
          onSocket,
        )
      : net.createServer(onSocket);
    if (identity) {
      listener.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
        this.log.info(`[${socket.remoteAddress ?? '?'}] TLS handshake failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
      });
    }
    listener.on('error', (err) => this.log.warn(`listener error: ${err.message}`));
    this.listener = listener;
    await new Promise<void>((resolveListen, reject) => {
      listener.once('error', reject);
      listener.listen(this.options.port, this.options.host, () => {
        listener.off('error', reject);
        resolveListen();
      });
    });
    const address = listener.address() as net.AddressInfo;
    await this.plugins.notifyAndWait('server:start', { host: address.address, port: address.port, dataDir });
    return {
      host: address.address,
      port: address.port,
      dataDir,
      fingerprint: identity?.fingerprint ?? null,
      identityCreated: identity?.created ?? false,
    };
  }

  private accept(socket: net.Socket, ctx: ServerContext): void {
    socket.on('error', () => {}); // reported by the session; never an uncaught exception
    const host = socket.remoteAddress ?? '?';
    const count = (this.perAddress.get(host) ?? 0) + 1;
    this.perAddress.set(host, count);
    socket.once('close', () => {
      const left = (this.perAddress.get(host) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(host);
      else this.perAddress.set(host, left);
    });
    const session = new Session(socket, ctx);
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
    await Promise.race([
      Promise.all([...this.sessions].map((s) => s.closed)),
      new Promise((r) => setTimeout(r, 3000).unref()),
    ]);
    await closing;
    await this.plugins.notifyAndWait('server:stop');
    await this.audit?.close();
  }
}
