import { createHash, type Hash } from 'node:crypto';
import { renameSync, utimesSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import type { AuditEvent } from '../audit/event.ts';
import { FerryError, type ErrorCode } from '../core/errors.ts';
import type { Entry } from '../core/types.ts';
import { DEFAULT_LIMITS, HEADER_SIZE, PROTOCOL_VERSION, parseServerMessage, type ServerMessage, type ServerMessageOf } from '../protocol/mod.ts';
import { DEFAULT_PORT } from '../core/address.ts';
import { utimeSeconds } from '../fs/time.ts';
import { fingerprintFromHex } from '../tls/identity.ts';
import { VERSION } from '../version.ts';
import { settled } from '../transport/streams.ts';
import { Wire } from '../transport/wire.ts';
import { KnownHosts } from './known-hosts.ts';
import type { ClientEncodings } from './encodings.ts';
import { LocalFile, LocalTarget } from './local-file.ts';
import { Mailbox } from './mailbox.ts';

/** Uploads at least this big ask the server for a partial to resume unless told otherwise. */
export const AUTO_RESUME_BYTES = 1024 * 1024;
const READ_CHUNK = 512 * 1024;
/** Downloaded bytes not yet on disk beyond this pause reading from the server. */
const WRITE_HIGH = 8 * 1024 * 1024;
export const PARTIAL_SUFFIX = '.ferry-part';

export interface HostCheck {
  host: string;
  port: number;
  fingerprint: string;
  /** The fingerprint remembered for this host, if any (it differs from `fingerprint` when called). */
  known: string | null;
}

export interface ConnectOptions {
  host: string;
  port?: number;
  /** Plain TCP, no TLS (the server must run with --insecure too). */
  insecure?: boolean;
  /** Pin: the server's certificate must have this fingerprint (`SHA256:...`). */
  fingerprint?: string;
  /** Where known hosts are remembered; null to use none. Default: the user's known_hosts file. */
  knownHosts?: KnownHosts | null;
  /** Asked about a server that is not known yet; true trusts it (and it is remembered). */
  confirmHost?: (check: HostCheck) => Promise<boolean>;
  /** Connect + TLS + handshake must finish within this time. */
  timeoutMs?: number;
  /** Wire encodings (e.g. compression) to offer; used per transfer when the server accepts them. */
  encodings?: ClientEncodings;
}

export interface AccountInfo {
  user: string;
  role: 'admin' | 'user';
  perms: string[];
}

export interface TransferProgress {
  /** Bytes of the file done so far (including a resumed prefix). */
  done: number;
  total: number;
}

export interface UploadOptions {
  overwrite?: boolean;
  parents?: boolean;
  /** Ask for a partial left by an interrupted upload (default: for files of 1 MiB and more). */
  resume?: boolean;
  onProgress?: (p: TransferProgress) => void;
  /** Use a negotiated wire encoding when the file looks worth it (default true). */
  encode?: boolean;
  /**
   * The SHA-256 (hex) the file must have: if the bytes read differ, the upload is cancelled before its
   * `end`, so nothing becomes visible on the server, and it fails with an `UnexpectedDigestError`.
   */
  expectSha256?: string;
}

/** How a verified upload or download went. */
export interface TransferResult {
  /** DATA bytes on the wire for this transfer (encoded bytes when an encoding was used; excludes framing). */
  wireBytes: number;
  /** The encoding used on the wire, or null for the bytes as they are. */
  encoding: string | null;
  size: number;
  sha256: string;
  /** Bytes that were already at the destination and were verified, not sent again. */
  resumedFrom: number;
  durationMs: number;
}

export type UploadResult = TransferResult;

export interface DownloadOptions {
  /** Replace an existing local file (default false). */
  overwrite?: boolean;
  /** Continue from `<local>.ferry-part` if present (default true). */
  resume?: boolean;
  onProgress?: (p: TransferProgress) => void;
  /**
   * The SHA-256 (hex) the file must have: if the verified download differs, the partial is deleted,
   * nothing is renamed into place, and it fails with an `UnexpectedDigestError`.
   */
  expectSha256?: string;
}

/**
 * A transfer verified, but its bytes are not the ones the caller asked for (`expectSha256`). Code
 * `digest_mismatch`, and not retryable: trying again moves the same bytes.
 */
export class UnexpectedDigestError extends FerryError {
  constructor(
    readonly path: string,
    readonly actual: string,
    readonly expected: string,
  ) {
    super('digest_mismatch', `'${path}' has sha256 ${actual}, not the expected ${expected}`);
    this.name = 'UnexpectedDigestError';
  }

  override get retryable(): boolean {
    return false;
  }
}

export type DownloadResult = TransferResult;

export interface ListResult {
  entries: Entry[];
  count: number;
  bytes: number;
  /** The user's usage, when a server plugin (quota) reports it. */
  usage?: UsageInfo;
}

/** Stored bytes and files of the logged-in user, and the limits when a quota applies. */
export interface UsageInfo {
  bytes: number;
  files: number;
  maxBytes?: number;
  maxFiles?: number;
}

export interface StatResult {
  entry: Entry;
  /** The file's SHA-256 when asked for (null for a directory, or when not asked). */
  sha256: string | null;
  usage?: UsageInfo;
}

type Incoming = { kind: 'msg'; msg: ServerMessage } | { kind: 'data'; chunk: Buffer };

interface Pending {
  onMessage(msg: ServerMessage): void;
  onData(chunk: Buffer): void;
  onClose(err: Error): void;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout();
        reject(new FerryError('timeout', `${what} timed out after ${ms} ms`));
      }, ms);
    }),
  ]);
}

async function openSocket(host: string, port: number, insecure: boolean, timeoutMs: number): Promise<{ socket: net.Socket; fingerprint: string | null }> {
  const socket = insecure
    ? net.connect({ host, port })
    : tls.connect({
        host,
        port,
        ...(net.isIP(host) ? {} : { servername: host }),
        rejectUnauthorized: false, // the certificate is self-signed: we check its fingerprint instead
        minVersion: 'TLSv1.3',
      });
  const ready = new Promise<void>((resolve, reject) => {
    socket.once(insecure ? 'connect' : 'secureConnect', () => resolve());
    socket.once('error', reject);
    socket.once('close', () => reject(new FerryError('connection_lost', `Connection to ${host}:${port} closed during set-up`)));
  });
  try {
    await withTimeout(ready, timeoutMs, `Connecting to ${host}:${port}`, () => socket.destroy());
  } catch (err) {
    socket.destroy();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED') throw new FerryError('connection_lost', `Cannot connect to ${host}:${port}: connection refused`);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new FerryError('connection_lost', `Cannot connect to ${host}:${port}: unknown host`);
    if (err instanceof FerryError) throw err;
    throw new FerryError('connection_lost', `Cannot connect to ${host}:${port}: ${(err as Error).message}`);
  }
  if (insecure) return { socket, fingerprint: null };
  const cert = (socket as tls.TLSSocket).getPeerCertificate();
  if (!cert?.fingerprint256) {
    socket.destroy();
    throw new Error(`Server ${host}:${port} presented no certificate`);
  }
  return { socket, fingerprint: fingerprintFromHex(cert.fingerprint256) };
}

/**
 * Connects, checks the server's identity (pinned fingerprint, known hosts, or the user's answer), and
 * completes the handshake. Nothing secret is sent before the identity check has passed.
 */
export async function connect(options: ConnectOptions): Promise<FerryClient> {
  const { host } = options;
  const port = options.port ?? DEFAULT_PORT;
  const insecure = options.insecure === true;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const knownHosts = options.knownHosts === undefined ? new KnownHosts() : options.knownHosts;
  let { socket, fingerprint } = await openSocket(host, port, insecure, timeoutMs);
  if (fingerprint) {
    try {
      const trusted = await checkIdentity(host, port, fingerprint, options, knownHosts);
      if (trusted === 'asked') {
        // The user may have taken a while to answer; start afresh, pinned to what they accepted.
        socket.destroy();
        const accepted = fingerprint;
        ({ socket, fingerprint } = await openSocket(host, port, insecure, timeoutMs));
        if (fingerprint !== accepted) throw new Error(`Server ${host}:${port} changed its fingerprint while you were deciding; refusing`);
      }
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }
  const client = new FerryClient(socket, host, port, fingerprint, options.encodings ?? null);
  try {
    await withTimeout(client.ready, timeoutMs, 'Handshake', () => socket.destroy());
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return client;
}

async function checkIdentity(
  host: string,
  port: number,
  fingerprint: string,
  options: ConnectOptions,
  knownHosts: KnownHosts | null,
): Promise<'pinned' | 'known' | 'asked'> {
  if (options.fingerprint) {
    if (options.fingerprint !== fingerprint) {
      throw new Error(
        `Server ${host}:${port} has fingerprint ${fingerprint}, not the pinned ${options.fingerprint}: refusing to connect`,
      );
    }
    await knownHosts?.remember(host, port, fingerprint);
    return 'pinned';
  }
  const known = (await knownHosts?.lookup(host, port)) ?? null;
  if (known === fingerprint) return 'known';
  if (known) {
    throw new Error(
      [
        `WARNING: THE FINGERPRINT OF ${host}:${port} HAS CHANGED.`,
        `Remembered: ${known}`,
        `Presented:  ${fingerprint}`,
        `Someone may be intercepting the connection, or the server's identity was replaced.`,
        `Refusing to connect. If the change is expected, pass --fingerprint ${fingerprint}`,
      ].join('\n'),
    );
  }
  const check = { host, port, fingerprint, known };
  if (!options.confirmHost) {
    throw new Error(
      `Unknown server ${host}:${port} with fingerprint ${fingerprint}; verify it with the server's operator, then pass --fingerprint ${fingerprint}`,
    );
  }
  if (!(await options.confirmHost(check))) throw new Error(`Server ${host}:${port} not trusted; nothing was sent`);
  await knownHosts?.remember(host, port, fingerprint);
  return 'asked';
}

/**
 * A connection to a ferry server. Every call is a request with its own id, so calls may be made
 * concurrently: they are pipelined on the one connection.
 */
export class FerryClient {
  readonly ready: Promise<ServerMessageOf<'welcome'>>;
  welcome: ServerMessageOf<'welcome'> | null = null;
  account: AccountInfo | null = null;
  private readonly wire: Wire;
  private readonly pending = new Map<number, Pending>();
  /** Requests given up locally: the server's late frames for them are dropped until its final word. */
  private readonly abandoned = new Set<number>();
  private nextId = 1;
  private closedWith: Error | null = null;
  private resolveReady!: (w: ServerMessageOf<'welcome'>) => void;
  private rejectReady!: (e: Error) => void;
  private readonly closeListeners: Array<(err: Error | null) => void> = [];

  constructor(
    socket: net.Socket,
    readonly host: string,
    readonly port: number,
    readonly fingerprint: string | null,
    private readonly encodings: ClientEncodings | null = null,
  ) {
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    this.wire = new Wire(
      socket,
      {
        onMessage: (id, body) => this.onMessage(id, parseServerMessage(body)),
        onData: (id, chunk) => this.route(id).onData(chunk),
        onClose: (err) => this.onClose(err),
      },
      DEFAULT_LIMITS,
    );
    const offered = ['resume', 'too_large', ...(encodings?.names.map((n) => `encoding:${n}`) ?? [])];
    this.wire.send(0, { t: 'hello', v: PROTOCOL_VERSION, agent: `ferry/${VERSION}`, features: offered });
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Encodings both sides agreed on in the handshake, in this client's order of preference. */
  get agreedEncodings(): string[] {
    const features = this.welcome?.features ?? [];
    return (this.encodings?.names ?? []).filter((n) => features.includes(`encoding:${n}`));
  }

  /** Picks the wire encoding for an upload from the file's name and first bytes, or null. */
  private async chooseEncoding(file: LocalFile, path: string, size: number): Promise<string | null> {
    const name = this.agreedEncodings[0];
    if (!name || !this.encodings || size === 0) return null;
    const sample = Buffer.allocUnsafe(Math.min(size, 64 * 1024));
    const { bytesRead } = await file.read(sample, 0, sample.length, 0);
    return this.encodings.worthEncoding(path, sample.subarray(0, bytesRead)) ? name : null;
  }

  /** Bytes on the wire so far, both ways, including framing and the preamble (not TLS overhead). */
  get wireBytes(): { in: number; out: number } {
    return { in: this.wire.bytesIn, out: this.wire.bytesOut };
  }

  onceClosed(listener: (err: Error | null) => void): void {
    this.closeListeners.push(listener);
  }

  private route(id: number): Pending {
    const p = this.pending.get(id);
    if (p) return p;
    if (this.abandoned.has(id)) return this.drop(id);
    throw new FerryError('unexpected_message', `The server answered request ${id}, which is not open`);
  }

  private drop(id: number): Pending {
    return {
      onMessage: (msg) => {
        if (msg.t === 'error' || msg.t === 'end' || msg.t === 'ok') this.abandoned.delete(id);
      },
      onData: () => {},
      onClose: () => {},
    };
  }

  /** Stops a request the server is still working on; its late replies are ignored. */
  private abandon(id: number): void {
    if (this.closedWith) return;
    this.abandoned.add(id);
    this.wire.send(id, { t: 'cancel' });
  }

  private onMessage(id: number, msg: ServerMessage): void {
    if (id === 0) {
      if (msg.t === 'welcome') {
        if (msg.v !== PROTOCOL_VERSION) throw new FerryError('version_mismatch', `Server speaks protocol ${msg.v}, this client ${PROTOCOL_VERSION}`);
        this.welcome = msg;
        this.resolveReady(msg);
        return;
      }
      if (msg.t === 'error') {
        // The server ends the connection after this; remember why.
        this.closedWith ??= remoteError(msg);
        return;
      }
      throw new FerryError('unexpected_message', `Unexpected '${msg.t}' for the connection`);
    }
    this.route(id).onMessage(msg);
  }

  private onClose(err: Error | null): void {
    const reason =
      this.closedWith ??
      (err instanceof FerryError ? err : new FerryError('connection_lost', err ? `Connection lost: ${err.message}` : 'The server closed the connection'));
    this.closedWith = reason;
    this.rejectReady(reason);
    for (const p of this.pending.values()) p.onClose(reason);
    this.pending.clear();
    for (const l of this.closeListeners) l(err);
  }

  private open(): { id: number; box: Mailbox<Incoming> } {
    if (this.closedWith) throw this.closedWith;
    const id = this.nextId++;
    if (this.nextId > 0xffff_fff0) this.nextId = 1;
    const box = new Mailbox<Incoming>();
    this.pending.set(id, {
      onMessage: (msg) => box.put({ kind: 'msg', msg }),
      onData: (chunk) => box.put({ kind: 'data', chunk }),
      onClose: (e) => box.close(e),
    });
    return { id, box };
  }

  /** Sends a request and collects its reply: `ok`'s result, plus any entries/events pages before it. */
  private async call<R = unknown>(message: { t: string } & Record<string, unknown>): Promise<{ result: R; entries: Entry[]; events: AuditEvent[] }> {
    const { id, box } = this.open();
    const entries: Entry[] = [];
    const events: AuditEvent[] = [];
    try {
      this.wire.send(id, message);
      for (;;) {
        const item = await box.next();
        if (item.kind !== 'msg') throw new FerryError('unexpected_message', `Data for a '${message.t}' request`);
        const msg = item.msg;
        if (msg.t === 'ok') return { result: msg.result as R, entries, events };
        if (msg.t === 'error') throw remoteError(msg);
        if (msg.t === 'entries' && Array.isArray(msg.entries)) entries.push(...(msg.entries as Entry[]));
        else if (msg.t === 'events' && Array.isArray(msg.events)) events.push(...(msg.events as AuditEvent[]));
        else throw new FerryError('unexpected_message', `Unexpected '${msg.t}' for a '${message.t}' request`);
      }
    } finally {
      this.pending.delete(id);
    }
  }

  async signup(user: string, password: string): Promise<AccountInfo> {
    const { result } = await this.call<AccountInfo>({ t: 'signup', user, password });
    this.account = result;
    return result;
  }

  async login(user: string, password: string): Promise<AccountInfo> {
    const { result } = await this.call<AccountInfo>({ t: 'login', user, password });
    this.account = result;
    return result;
  }

  async list(path = ''): Promise<ListResult> {
    const { result, entries } = await this.call<{ count: number; bytes: number; usage?: unknown }>({ t: 'list', path });
    const usage = usageOf(result.usage);
    return { entries, count: result.count, bytes: result.bytes, ...(usage ? { usage } : {}) };
  }

  async stat(path: string): Promise<Entry> {
    const { result } = await this.call<{ entry: Entry }>({ t: 'stat', path });
    return result.entry;
  }

  /** The entry and, for a file, the SHA-256 of its content (the server reads the whole file). */
  async statHash(path: string): Promise<{ entry: Entry; sha256: string | null }> {
    const { result } = await this.call<{ entry: Entry; sha256?: string }>({ t: 'stat', path, sha256: true });
    return { entry: result.entry, sha256: result.sha256 ?? null };
  }

  /** The entry, its SHA-256 with `sha256: true` (the server reads the whole file), and the user's usage if reported. */
  async statFull(path: string, options: { sha256?: boolean } = {}): Promise<StatResult> {
    const { result } = await this.call<{ entry: Entry; sha256?: string; usage?: unknown }>({ t: 'stat', path, ...(options.sha256 ? { sha256: true } : {}) });
    const usage = usageOf(result.usage);
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
    await this.call({ t: 'delete', path });
  }

  async mkdir(path: string, parents = false): Promise<void> {
    await this.call({ t: 'mkdir', path, parents });
  }

  async rename(from: string, to: string, overwrite = false): Promise<void> {
    await this.call({ t: 'rename', from, to, overwrite });
  }

  async readLog(options: { all?: boolean; limit?: number } = {}): Promise<{ events: AuditEvent[]; scope: 'all' | 'own' }> {
    const { result, events } = await this.call<{ scope: 'all' | 'own' }>({ t: 'log', ...options });
    return { events, scope: result.scope };
  }

  async clearLog(): Promise<string> {
    const { result } = await this.call<{ archive: string }>({ t: 'clearlog' });
    return result.archive;
  }

  async ping(): Promise<void> {
    await this.call({ t: 'ping' });
  }

  /** Says goodbye and closes. Safe to call on a closed client. */
  async quit(): Promise<void> {
    if (this.closedWith) return;
    try {
      await withTimeout(this.call({ t: 'bye' }), 2000, 'Quit', () => {});
    } catch {
      // Closing anyway.
    }
    this.wire.end();
  }

  /** Drops the connection at once (no goodbye). */
  destroy(): void {
    this.wire.destroy();
  }

  /**
   * Uploads a local file. The server keeps it invisible until size and SHA-256 match; an interrupted
   * upload leaves a partial on the server that a later upload of the same path and size resumes after
   * both sides agree on the SHA-256 of the part already there.
   */
  async upload(localPath: string, remotePath: string, options: UploadOptions = {}): Promise<UploadResult> {
    const started = Date.now();
    const file = await LocalFile.open(localPath);
    try {
      const size = file.size;
      const canResume = this.welcome?.features.includes('resume') === true;
      const resume = canResume && (options.resume ?? size >= AUTO_RESUME_BYTES);
      const encoding = options.encode === false ? null : await this.chooseEncoding(file, localPath, size);
      const { id, box } = this.open();
      let endSent = false;
      let serverDone = false;
      /** The next reply for this upload; an `ok` or `error` is the server's final word on it. */
      const settle = (item: Incoming): void => {
        serverDone = true;
        if (item.kind === 'msg' && item.msg.t === 'error') throw remoteError(item.msg);
        if (!(item.kind === 'msg' && item.msg.t === 'ok') || !endSent) {
          throw new FerryError('unexpected_message', 'Unexpected reply to an upload');
        }
      };
      try {
        this.wire.send(id, {
          t: 'put',
          path: remotePath,
          size,
          mtime: Math.floor(file.mtimeMs),
          overwrite: options.overwrite === true,
          parents: options.parents === true,
          resume,
          ...(encoding ? { encoding } : {}),
        });
        let hash = createHash('sha256');
        let position = 0;
        if (resume) {
          const item = await box.next();
          if (!(item.kind === 'msg' && item.msg.t === 'resume')) settle(item);
          const offer = item.kind === 'msg' && item.msg.t === 'resume' ? item.msg : { offset: 0, sha256: '' };
          if (offer.offset > 0 && offer.offset <= size) {
            const local = await hashPrefix(file, offer.offset);
            if (local.digest === offer.sha256) {
              hash = local.hash;
              position = offer.offset;
            }
          }
          this.wire.send(id, { t: 'from', offset: position });
        }
        const resumedFrom = position;
        const frame = Math.min(this.welcome?.maxData ?? DEFAULT_LIMITS.maxData, READ_CHUNK);
        let wireBytes = 0;
        /** Sends wire bytes as DATA frames; false when the socket buffer is full. */
        const sendFrames = (bytes: Buffer): boolean => {
          let ok = true;
          for (let at = 0; at < bytes.length; at += frame) ok = this.wire.sendData(id, bytes.subarray(at, at + frame));
          wireBytes += bytes.length;
          return ok;
        };
        const encoder = encoding ? this.encodings?.encoder(encoding) ?? null : null;
        if (encoding && !encoder) throw new Error(`No encoder for '${encoding}'`);
        let encoderEnded: Promise<unknown> = Promise.resolve();
        if (encoder) {
          encoder.on('data', (out: Buffer) => {
            if (!sendFrames(out)) {
              encoder.pause();
              void this.wire.drained().then(() => encoder.resume());
            }
          });
          encoderEnded = settled(encoder, 'end');
        }
        try {
          options.onProgress?.({ done: position, total: size });
          // One read ahead: the next chunk comes off the disk while this one is hashed, encrypted and sent.
          // Chunks are read after HEADER_SIZE free bytes, so that a chunk that fits one frame is sent as one
          // buffer, and the buffers come back for the next reads once the socket is done with them (fewer
          // allocations of 512 KiB, less garbage collection).
          const spare: Buffer[] = [];
          const readAt = (at: number): Promise<{ buf: Buffer; chunk: Buffer }> => {
            const want = Math.min(READ_CHUNK, size - at);
            // Sized for the file: a small file must not cost (and make the GC chase) a 512 KiB buffer.
            const buf = spare.pop() ?? Buffer.allocUnsafeSlow(HEADER_SIZE + Math.min(READ_CHUNK, size));
            const read = file.read(buf, HEADER_SIZE, want, at).then(({ bytesRead }) => ({ buf, chunk: buf.subarray(HEADER_SIZE, HEADER_SIZE + bytesRead) }));
            read.catch(() => {}); // awaited below; never an unhandled rejection if the loop ends early
            return read;
          };
          let ahead: Promise<{ buf: Buffer; chunk: Buffer }> | null = position < size ? readAt(position) : null;
          while (position < size) {
            const early = box.poll();
            if (early) settle(early);
            const { buf, chunk } = await (ahead as Promise<{ buf: Buffer; chunk: Buffer }>);
            const bytesRead = chunk.length;
            if (bytesRead === 0) throw new Error(`'${localPath}' shrank while it was being uploaded`);
            ahead = position + bytesRead < size ? readAt(position + bytesRead) : null;
            hash.update(chunk);
            if (encoder) {
              // The encoder may hold the chunk after write() returns: its buffer is not reused.
              if (!encoder.write(chunk)) await settled(encoder, 'drain');
            } else if (bytesRead <= frame) {
              wireBytes += bytesRead;
              const reuse = () => void (spare.length < 4 && spare.push(buf));
              if (!this.wire.sendFrame(id, buf.subarray(0, HEADER_SIZE + bytesRead), reuse)) await this.wire.drained();
            } else if (!sendFrames(chunk)) {
              await this.wire.drained();
            }
            position += bytesRead;
            options.onProgress?.({ done: position, total: size });
            if (this.closedWith) throw this.closedWith;
          }
          if (encoder) {
            encoder.end();
            await encoderEnded;
          }
        } finally {
          encoder?.destroy();
        }
        const sha256 = hash.digest('hex');
        if (options.expectSha256 !== undefined && sha256 !== options.expectSha256.toLowerCase()) {
          throw new UnexpectedDigestError(localPath, sha256, options.expectSha256.toLowerCase());
        }
        this.wire.send(id, { t: 'end', sha256 });
        endSent = true;
        settle(await box.next());
        return { size, sha256, resumedFrom, durationMs: Date.now() - started, wireBytes, encoding };
      } catch (err) {
        if (!endSent && !this.closedWith) {
          // Refused: release the id on the server. Still running: stop it.
          if (serverDone) this.wire.send(id, { t: 'cancel' });
          else this.abandon(id);
        }
        throw err;
      } finally {
        this.pending.delete(id);
      }
    } finally {
      await file.close();
    }
  }

  /**
   * Downloads to `localPath` through `<localPath>.ferry-part`, renamed into place only after the
   * SHA-256 of the whole file matches the server's. A partial left by an interrupted download is
   * resumed; if the result does not verify, the partial is discarded and the file fetched again once.
   */
  async download(remotePath: string, localPath: string, options: DownloadOptions = {}): Promise<DownloadResult> {
    if (!options.overwrite) {
      const existing = await stat(localPath).catch(() => null);
      if (existing) throw new FerryError('exists', `'${localPath}' exists locally (use overwrite to replace it)`);
    }
    try {
      return await this.downloadOnce(remotePath, localPath, options);
    } catch (err) {
      // A resumed download that does not fit or does not verify: the local partial was stale. Start over once.
      if (err instanceof FerryError && (err.code === 'digest_mismatch' || err.code === 'size_mismatch') && (err as FerryError & { resumed?: boolean }).resumed) {
        await rm(localPath + PARTIAL_SUFFIX, { force: true });
        return this.downloadOnce(remotePath, localPath, { ...options, resume: false });
      }
      throw err;
    }
  }

  private async downloadOnce(remotePath: string, localPath: string, options: DownloadOptions): Promise<DownloadResult> {
    const started = Date.now();
    const partPath = localPath + PARTIAL_SUFFIX;
    const resume = options.resume !== false;
    let offset = 0;
    let hash: Hash = createHash('sha256');
    const file = LocalTarget.open(partPath, resume);
    if (file.initialSize > 0) {
      try {
        hash = (await hashPrefix(file, file.initialSize)).hash;
      } catch (err) {
        await file.close().catch(() => {});
        throw err;
      }
      offset = file.initialSize;
    }
    const { id, box } = this.open();
    let keepPartial = true;
    let serverDone = false;
    try {
      const accept = this.agreedEncodings;
      this.wire.send(id, { t: 'get', path: remotePath, offset, ...(accept.length > 0 ? { accept } : {}) });
      const first = await box.next();
      if (!(first.kind === 'msg' && first.msg.t === 'meta')) {
        serverDone = true;
        if (first.kind === 'msg' && first.msg.t === 'error') {
          const err = remoteError(first.msg) as FerryError & { resumed?: boolean };
          err.resumed = offset > 0;
          throw err;
        }
        throw new FerryError('unexpected_message', "Expected 'meta' from the server");
      }
      const meta = first.msg;
      file.small = LocalTarget.isSmall(meta.size);
      const encoding = meta.encoding ?? null;
      if (encoding !== null && !accept.includes(encoding)) throw new FerryError('unexpected_message', `The server chose encoding '${encoding}', which was not offered`);
      const decoder = encoding ? this.encodings?.decoder(encoding) ?? null : null;
      let position = offset;
      let wireBytes = 0;
      let unwritten = 0;
      let paused = false;
      let failure: Error | null = null;
      let writing: Promise<void> = Promise.resolve();
      let queued: Buffer[] = [];
      let queuedAt = 0;
      /** Takes file bytes (decoded): hashes, bounds and writes them in order. */
      const consume = (chunk: Buffer): void => {
        if (failure) return;
        hash.update(chunk);
        const at = position;
        position += chunk.length;
        if (position > meta.size) {
          // Also what stops a decompression bomb: never more than the announced size is accepted.
          failure = new FerryError('size_mismatch', `The server sent more than the ${meta.size} bytes it announced`);
          decoder?.destroy();
          return;
        }
        unwritten += chunk.length;
        if (!paused && unwritten > WRITE_HIGH) {
          paused = true;
          this.wire.pause();
        }
        // Chunks that arrive while a write is in flight are written together by the next writev.
        if (queued.length === 0) queuedAt = at;
        queued.push(chunk);
        if (queued.length > 1) return void options.onProgress?.({ done: position, total: meta.size });
        writing = writing.then(async () => {
          const batch = queued;
          const from = queuedAt;
          queued = [];
          let where = from;
          let rest = batch;
          while (rest.length > 0) {
            const { bytesWritten } = await file.writev(rest, where);
            if (bytesWritten <= 0) throw new Error(`Cannot write '${partPath}'`);
            where += bytesWritten;
            rest = skipBytes(rest, bytesWritten);
          }
          unwritten -= where - from;
          if (paused && unwritten < WRITE_HIGH / 4) {
            paused = false;
            this.wire.resume();
          }
        });
        writing.catch(() => {});
        options.onProgress?.({ done: position, total: meta.size });
      };
      let decoderEnded: Promise<unknown> = Promise.resolve();
      if (decoder) {
        decoder.on('data', consume);
        decoder.on('error', (err) => (failure ??= new FerryError('bad_encoding', `Cannot decode the ${encoding} data: ${err.message}`)));
        decoderEnded = settled(decoder, 'end');
      }
      options.onProgress?.({ done: position, total: meta.size });
      try {
        for (;;) {
          const item = await box.next();
          if (failure) throw failure;
          if (item.kind === 'data') {
            wireBytes += item.chunk.length;
            if (!decoder) consume(item.chunk);
            else if (!decoder.write(item.chunk)) await settled(decoder, 'drain');
            if (failure) throw failure;
            continue;
          }
          const msg = item.msg;
          serverDone = msg.t === 'error' || msg.t === 'end';
          if (msg.t === 'error') throw remoteError(msg);
          if (msg.t !== 'end') throw new FerryError('unexpected_message', `Unexpected '${msg.t}' during a download`);
          if (decoder) {
            decoder.end();
            await decoderEnded;
          }
          if (failure) throw failure;
          await writing;
          const digest = hash.digest('hex');
          if (position !== meta.size || digest !== msg.sha256) {
            keepPartial = false;
            const err = new FerryError(
              position !== meta.size ? 'size_mismatch' : 'digest_mismatch',
              `'${remotePath}' did not verify (${position} of ${meta.size} bytes, sha256 ${digest.slice(0, 12)}… vs ${msg.sha256.slice(0, 12)}…); the partial was discarded`,
            ) as FerryError & { resumed?: boolean };
            err.resumed = offset > 0;
            throw err;
          }
          if (options.expectSha256 !== undefined && digest !== options.expectSha256.toLowerCase()) {
            keepPartial = false;
            throw new UnexpectedDigestError(remotePath, digest, options.expectSha256.toLowerCase());
          }
          await file.sync();
          await file.close();
          // Local metadata calls: microseconds each, cheaper than a thread-pool round trip.
          renameSync(partPath, localPath);
          try {
            utimesSync(localPath, new Date(), utimeSeconds(meta.mtime));
          } catch {
            // The file is in place; a time that cannot be set is not worth failing for.
          }
          return { size: meta.size, sha256: digest, resumedFrom: offset, durationMs: Date.now() - started, wireBytes, encoding };
        }
      } finally {
        decoder?.destroy();
        if (paused) {
          paused = false;
          this.wire.resume();
        }
      }
    } catch (err) {
      await file.close().catch(() => {}); // the error that brought us here is the one to report
      // Keep what arrived for a resume when the cause may pass (connection lost, server busy).
      if (err instanceof FerryError && !err.retryable) keepPartial = false;
      if (!keepPartial) await rm(partPath, { force: true });
      if (!serverDone) this.abandon(id);
      throw err;
    } finally {
      this.pending.delete(id);
    }
  }
}

/** Usage figures from a LIST or STAT result, if the server sent well-formed ones. */
function usageOf(value: unknown): UsageInfo | undefined {
  const u = value as Partial<Record<keyof UsageInfo, unknown>> | null | undefined;
  const count = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  if (typeof u !== 'object' || u === null || !count(u.bytes) || !count(u.files)) return undefined;
  const usage: UsageInfo = { bytes: u.bytes, files: u.files };
  if (count(u.maxBytes)) usage.maxBytes = u.maxBytes;
  if (count(u.maxFiles)) usage.maxFiles = u.maxFiles;
  return usage;
}

function remoteError(msg: { code: string; message: string }): FerryError {
  return new FerryError(msg.code as ErrorCode, msg.message);
}

/** `chunks` without their first `n` bytes (after a short writev). */
function skipBytes(chunks: Buffer[], n: number): Buffer[] {
  let i = 0;
  while (i < chunks.length && n >= (chunks[i] as Buffer).length) n -= (chunks[i++] as Buffer).length;
  if (i === chunks.length) return [];
  return n > 0 ? [(chunks[i] as Buffer).subarray(n), ...chunks.slice(i + 1)] : chunks.slice(i);
}

/** SHA-256 of the first `length` bytes of a file, and the hash object to continue from there. */
async function hashPrefix(file: LocalFile | LocalTarget, length: number): Promise<{ hash: Hash; digest: string }> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(length, 1)));
  let position = 0;
  while (position < length) {
    const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, length - position), position);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    position += bytesRead;
  }
  const digest = hash.copy().digest('hex');
  return { hash, digest };
}
