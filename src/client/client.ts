import type net from 'node:net';
import type { Transform } from 'node:stream';
import type { AuditEvent } from '../audit/event.ts';
import { asAuditEvent } from '../audit/event.ts';
import { FerryError } from '../core/errors.ts';
import type { Entry, Usage } from '../core/types.ts';
import { DEFAULT_LIMITS, PROTOCOL_VERSION } from '../protocol/frame.ts';
import { parseServerMessage, type ServerMessage, type ServerMessageOf } from '../protocol/messages.ts';
import { usageOf, type AccountResult } from '../protocol/results.ts';
import type { ClientEncodings } from '../plugin/types.ts';
import { Wire } from '../transport/wire.ts';
import { VERSION } from '../version.ts';
import { getMany, putMany, type BundleGet, type BundleHooks, type BundlePut, type BundleResult } from './bundle.ts';
import { downloadFile, type DownloadOptions } from './download.ts';
import { Mux, remoteError } from './mux.ts';
import type { TransferLink, TransferResult } from './transfer.ts';
import type { Trust } from './trust.ts';
import { uploadFile, type UploadOptions } from './upload.ts';

export type AccountInfo = AccountResult;
export type UsageInfo = Usage;

export interface ListResult {
  entries: Entry[];
  count: number;
  bytes: number;
  /** The user's usage, when a server plugin (quota) reports it. */
  usage?: Usage;
}

export interface StatResult {
  entry: Entry;
  /** The file's SHA-256 when asked for (null for a directory, or when not asked). */
  sha256: string | null;
  usage?: Usage;
}

/**
 * A connection to a ferry server (made by `connect`, connection.ts). Every call is a request with its own id
 * (mux.ts), so calls may be made concurrently: they are pipelined on the one connection. Results are typed and
 * checked (protocol/results.ts); uploads and downloads are verified end to end (upload.ts, download.ts).
 */
export class FerryClient implements TransferLink {
  readonly ready: Promise<ServerMessageOf<'welcome'>>;
  welcome: ServerMessageOf<'welcome'> | null = null;
  account: AccountInfo | null = null;
  readonly wire: Wire;
  readonly mux: Mux;
  private resolveReady!: (w: ServerMessageOf<'welcome'>) => void;
  private rejectReady!: (e: Error) => void;
  private readonly closeListeners: Array<(err: Error | null) => void> = [];

  constructor(
    socket: net.Socket,
    readonly host: string,
    readonly port: number,
    readonly fingerprint: string | null,
    private readonly encodings: ClientEncodings | null = null,
    /** How the server's certificate came to be trusted (trust.ts); null for plain TCP. */
    readonly trust: Trust | null = null,
  ) {
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    this.wire = new Wire(
      socket,
      {
        onMessage: (id, body) => this.mux.message(id, parseServerMessage(body)),
        onData: (id, chunk) => this.mux.data(id, chunk),
        onClose: (err) => this.onClose(err),
      },
      DEFAULT_LIMITS,
    );
    this.mux = new Mux(this.wire, (msg) => this.onConnectionMessage(msg));
    const offered = ['resume', 'too_large', 'unavailable', 'bundle', ...(encodings?.names.map((n) => `encoding:${n}`) ?? [])];
    this.wire.send(0, { t: 'hello', v: PROTOCOL_VERSION, agent: `ferry/${VERSION}`, features: offered });
  }

  /** The certificate authority (the issuer's name) that verified the server's certificate for `host`, else null. */
  get verifiedBy(): string | null {
    return this.trust?.verifiedBy ?? null;
  }

  get closed(): boolean {
    return this.mux.closedWith !== null;
  }

  /** Encodings both sides agreed on in the handshake, in this client's order of preference. */
  get agreedEncodings(): string[] {
    const features = this.welcome?.features ?? [];
    return (this.encodings?.names ?? []).filter((n) => features.includes(`encoding:${n}`));
  }

  encoder(name: string): Transform | null {
    return this.encodings?.encoder(name) ?? null;
  }

  decoder(name: string): Transform | null {
    return this.encodings?.decoder(name) ?? null;
  }

  worthEncoding(path: string, sample: Uint8Array): boolean {
    return this.encodings?.worthEncoding(path, sample) ?? false;
  }

  /** Bytes on the wire so far, both ways, including framing and the preamble (not TLS overhead). */
  get wireBytes(): { in: number; out: number } {
    return { in: this.wire.bytesIn, out: this.wire.bytesOut };
  }

  onceClosed(listener: (err: Error | null) => void): void {
    this.closeListeners.push(listener);
  }

  /** Messages for the connection itself: the welcome, or the server's last word before it closes. */
  private onConnectionMessage(msg: ServerMessage): void {
    if (msg.t === 'welcome') {
      if (msg.v !== PROTOCOL_VERSION) throw new FerryError('version_mismatch', `Server speaks protocol ${msg.v}, this client ${PROTOCOL_VERSION}`);
      this.welcome = msg;
      this.resolveReady(msg);
      return;
    }
    if (msg.t === 'error') {
      // The server ends the connection after this; remember why.
      this.mux.closing(remoteError(msg));
      return;
    }
    throw new FerryError('unexpected_message', `Unexpected '${msg.t}' for the connection`);
  }

  private onClose(err: Error | null): void {
    const reason =
      this.mux.closedWith ??
      (err instanceof FerryError ? err : new FerryError('connection_lost', err ? `Connection lost: ${err.message}` : 'The server closed the connection'));
    this.mux.close(reason);
    this.rejectReady(reason);
    for (const l of this.closeListeners) l(err);
  }

  async signup(user: string, password: string): Promise<AccountInfo> {
    const { result } = await this.mux.call('signup', { user, password });
    this.account = result;
    return result;
  }

  async login(user: string, password: string): Promise<AccountInfo> {
    const { result } = await this.mux.call('login', { user, password });
    this.account = result;
    return result;
  }

  async list(path = ''): Promise<ListResult> {
    const { result, entries } = await this.mux.call('list', { path });
    const usage = usageOf(result);
    return { entries, count: result.count, bytes: result.bytes, ...(usage ? { usage } : {}) };
  }

  /**
   * Everything below a folder in one request (feature `bundle`, see `bundles`), each entry named by its path
   * relative to it, a folder before what it holds.
   */
  async listTree(path = ''): Promise<ListResult> {
    const { result, entries } = await this.mux.call('list', { path, recursive: true });
    const usage = usageOf(result);
    return { entries, count: result.count, bytes: result.bytes, ...(usage ? { usage } : {}) };
  }

  async stat(path: string): Promise<Entry> {
    const { result } = await this.mux.call('stat', { path });
    return result.entry;
  }

  /** The entry and, for a file, the SHA-256 of its content (the server reads the whole file). */
  async statHash(path: string): Promise<{ entry: Entry; sha256: string | null }> {
    const { result } = await this.mux.call('stat', { path, sha256: true });
    return { entry: result.entry, sha256: result.sha256 ?? null };
  }

  /** The entry, its SHA-256 with `sha256: true` (the server reads the whole file), and the user's usage if reported. */
  async statFull(path: string, options: { sha256?: boolean } = {}): Promise<StatResult> {
    const { result } = await this.mux.call('stat', { path, ...(options.sha256 ? { sha256: true } : {}) });
    const usage = usageOf(result);
    return { entry: result.entry, sha256: result.sha256 ?? null, ...(usage ? { usage } : {}) };
  }

  /** Like stat, but null for a path that does not exist. */
  async exists(path: string): Promise<Entry | null> {
    try {
      return await this.stat(path);
    } catch (err) {
      if (err instanceof FerryError && err.code === 'not_found') return null;
      throw err;
    }
  }

  async delete(path: string): Promise<void> {
    await this.mux.call('delete', { path });
  }

  async mkdir(path: string, parents = false): Promise<void> {
    await this.mux.call('mkdir', { path, parents });
  }

  async rename(from: string, to: string, overwrite = false): Promise<void> {
    await this.mux.call('rename', { from, to, overwrite });
  }

  /** The user's own events (an admin's: everyone's), oldest first; events that are not of the expected shape are left out. */
  async readLog(options: { all?: boolean; limit?: number } = {}): Promise<{ events: AuditEvent[]; scope: 'all' | 'own' }> {
    const { result, events } = await this.mux.call('log', options);
    return { events: events.map(asAuditEvent).filter((e): e is AuditEvent => e !== null), scope: result.scope };
  }

  async clearLog(): Promise<string> {
    const { result } = await this.mux.call('clearlog', {});
    return result.archive;
  }

  async ping(): Promise<void> {
    await this.mux.call('ping', {});
  }

  /** Says goodbye and closes. Safe to call on a closed client. */
  async quit(): Promise<void> {
    if (this.closed) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.mux.call('bye', {}), new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
    } catch {
      // Closing anyway.
    } finally {
      clearTimeout(timer);
    }
    this.wire.end();
  }

  /** Drops the connection at once (no goodbye). */
  destroy(): void {
    this.wire.destroy();
  }

  /** Uploads a local file, verified (see upload.ts). */
  upload(localPath: string, remotePath: string, options: UploadOptions = {}): Promise<TransferResult> {
    return uploadFile(this, localPath, remotePath, options);
  }

  /** Whether the server takes many small files as one stream (`putMany`, `getMany`). */
  get bundles(): boolean {
    return this.welcome?.features.includes('bundle') === true;
  }

  /** Uploads many small files as one stream, each verified (see bundle.ts; needs `bundles`). */
  putMany(items: readonly BundlePut[], hooks: BundleHooks = {}): Promise<BundleResult> {
    return putMany(this, items, hooks);
  }

  /** Downloads many small files as one stream, each verified (see bundle.ts; needs `bundles`). */
  getMany(items: readonly BundleGet[], hooks: BundleHooks = {}): Promise<BundleResult> {
    return getMany(this, items, hooks);
  }

  /** Downloads to a local file, verified (see download.ts). */
  download(remotePath: string, localPath: string, options: DownloadOptions = {}): Promise<TransferResult> {
    return downloadFile(this, remotePath, localPath, options);
  }
}
