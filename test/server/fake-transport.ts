// A session without a socket: a fake transport that records what the session sends, and a server context made
// of the real parts (users file, audit log, local-disk storage in a temp dir). For unit tests of the session's
// handler table, and of any front end that drives a Session.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../../src/audit/log.ts';
import { LoginThrottle, RateLimit } from '../../src/auth/throttle.ts';
import { UserStore } from '../../src/auth/users.ts';
import { encodeMessage, HEADER_SIZE, parseServerMessage, type ServerMessage } from '../../src/protocol/mod.ts';
import type { FerryPlugin } from '../../src/plugin/types.ts';
import { PluginHost } from '../../src/plugin/host.ts';
import type { ServerContext } from '../../src/server/context.ts';
import { FreeSpace } from '../../src/server/free-space.ts';
import { DEFAULT_SERVER_OPTIONS, type ServerOptions } from '../../src/server/options.ts';
import { Session } from '../../src/server/session/session.ts';
import type { SessionTransport } from '../../src/server/session/scope.ts';
import { TransferSlots } from '../../src/server/session/transfers.ts';
import { LocalDiskDriver } from '../../src/storage/local/mod.ts';

process.env.FERRY_SCRYPT_N = '1024';

/** What a session sent: messages (parsed as a client would), data frames (their sizes), and how it ended. */
export class FakeTransport implements SessionTransport {
  readonly sent: Array<{ id: number; msg: ServerMessage }> = [];
  readonly data = new Map<number, Buffer[]>();
  failedWith: Error | null = null;
  ended = false;
  paused = 0;
  #waiters: Array<() => void> = [];

  get isClosed(): boolean {
    return this.failedWith !== null || this.ended;
  }

  send(id: number, message: object): boolean {
    // Through the real encoder and parser: what a client would read.
    const frame = encodeMessage(id, message);
    this.sent.push({ id, msg: parseServerMessage(frame.subarray(HEADER_SIZE)) });
    this.#wake();
    return true;
  }

  sendData(id: number, payload: Uint8Array): boolean {
    const list = this.data.get(id) ?? [];
    list.push(Buffer.from(payload));
    this.data.set(id, list);
    return true;
  }

  sendFrame(id: number, frame: Buffer, onWritten: () => void): boolean {
    this.sendData(id, frame.subarray(HEADER_SIZE));
    onWritten();
    return true;
  }

  async drained(): Promise<void> {}

  pause(): void {
    this.paused++;
  }

  resume(): void {
    this.paused--;
  }

  fail(err: Error): void {
    this.failedWith ??= err;
    this.#wake();
  }

  end(): void {
    this.ended = true;
    this.#wake();
  }

  /** The replies to request `id` so far. */
  repliesTo(id: number): ServerMessage[] {
    return this.sent.filter((s) => s.id === id).map((s) => s.msg);
  }

  /** Waits (up to `ms`) for a reply to `id` that ends it: ok, error or end. */
  async final(id: number, ms = 5000): Promise<ServerMessage> {
    const deadline = Date.now() + ms;
    for (;;) {
      const done = this.repliesTo(id).find((m) => m.t === 'ok' || m.t === 'error' || m.t === 'end');
      if (done) return done;
      if (this.failedWith) throw this.failedWith;
      if (Date.now() > deadline) throw new Error(`no final reply to ${id} within ${ms} ms: ${JSON.stringify(this.repliesTo(id))}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 20).unref();
      });
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

export interface Harness {
  dir: string;
  ctx: ServerContext;
  lines: string[];
  /** A new session from 10.0.0.1:<port> over a fake transport. */
  session(port?: number): { session: Session; transport: FakeTransport; send(id: number, message: object): void };
  close(): Promise<void>;
}

/** A server context of real parts in a temp dir, with `plugins` and `options` as given. */
export function harness(plugins: FerryPlugin<unknown>[] = [], options: Partial<ServerOptions> = {}): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-fake-'));
  const lines: string[] = [];
  const log = { info: (l: string) => void lines.push(l), warn: (l: string) => void lines.push(`warning: ${l}`) };
  const merged: ServerOptions = { ...DEFAULT_SERVER_OPTIONS, dataDir: dir, ...options };
  const audit = new AuditLog(dir);
  const host = new PluginHost(plugins, { info: log.info, warn: log.warn, error: log.warn });
  const ctx: ServerContext = {
    options: merged,
    users: new UserStore(join(dir, 'users.json')),
    throttle: new LoginThrottle(),
    transfers: new TransferSlots(merged.maxTransfersPerUser),
    signups: new RateLimit({ limit: merged.signupsPerAddressPerHour, windowMs: 3600_000 }),
    audit,
    storage: new LocalDiskDriver(dir),
    freeSpace: new FreeSpace(dir),
    log,
    plugins: host,
    links: null,
    agent: 'ferry/test',
    features: ['resume', 'too_large', ...host.features],
  };
  const sessions: Session[] = [];
  return {
    dir,
    ctx,
    lines,
    session(port = 5000) {
      const transport = new FakeTransport();
      const session = new Session(transport, { ip: '10.0.0.1', port }, ctx);
      sessions.push(session);
      return { session, transport, send: (id, message) => session.receiveMessage(id, Buffer.from(JSON.stringify(message))) };
    },
    async close() {
      for (const s of sessions) void s.ended(null);
      await Promise.all(sessions.map((s) => s.closed));
      await audit.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
