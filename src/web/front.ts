/**
 * The browser side of `ferry serve`: HTTPS on the protocol's own port, chosen by TLS ALPN (`http/1.1`; a client that
 * offers `ferry/1`, or nothing, is a ferry client). It serves the page's assets (built into the executable: no CDN,
 * nothing fetched from elsewhere) and one WebSocket, `/ws`, whose binary messages carry the ferry protocol's own
 * bytes — preamble and frames — to a session like any other: the same handlers, limits, plugins and audit.
 *
 * Limits as on the protocol side: the server's connection caps count these connections too (the caller checks them);
 * slow or oversized request heads, idle keep-alive connections and WebSocket frames larger than the protocol's own
 * are refused; an upgrade from another origin is refused; every response carries a strict Content-Security-Policy.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { escapeText } from '../core/text.ts';
import { ASSETS, type Asset } from './assets.ts';
import type { DownloadLinks, LinkTarget } from './links.ts';

/** A file opened for a link's download (the storage's ReadHandle, as far as this needs it). */
export interface OpenedFile {
  readonly size: number;
  readInto(target: Buffer, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface WebFrontOptions {
  /** Largest ferry frame payload (limits.maxData): a WebSocket message may hold one frame and its header. */
  maxData: number;
  /** A request head must arrive within this time (the protocol's handshake time-out). */
  headTimeoutMs: number;
  /** A WebSocket with no traffic for this long is closed (the protocol's idle time-out). */
  idleTimeoutMs: number;
  /** A new ferry session over `stream` (the WebSocket's bytes) from `peer`. */
  openSession(stream: Duplex, peer: { ip: string; port: number }): void;
  /** Download links minted by sessions (request `link`). */
  links: DownloadLinks;
  /** Opens a link's file (its user's storage). */
  openFile(target: LinkTarget): Promise<OpenedFile>;
  /** A link's download ended: sent whole (`error` undefined) or not (audit). */
  downloaded(target: LinkTarget, peer: { ip: string; port: number }, outcome: { bytes: number; ms: number; error?: string }): void;
  log(message: string): void;
}

/** What every response says, whatever it is. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; " +
    "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Frame-Options': 'DENY',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

/** The largest request head (request line and headers) accepted. */
export const MAX_HEAD_BYTES = 16 * 1024;

/** The bytes of an upload link handed to the session at a time (the protocol's DATA frames carry up to 1 MiB). */
const LINK_BATCH = 1024 * 1024;

/** Ends a connection with a bodiless HTTP refusal written raw: for answers given outside Node's request handling. */
export function refuseRaw(socket: Duplex, status: number, headers: Readonly<Record<string, string>> = {}): void {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\n${extra}Content-Length: 0\r\n\r\n`);
}

/**
 * @example
 * ```ts
 * const web = new WebFront({ maxData, headTimeoutMs, idleTimeoutMs, openSession, log });
 * // for each TLS socket whose ALPN protocol is http/1.1:
 * web.accept(tlsSocket, { ip, port });
 * ```
 */
export class WebFront {
  readonly #http: http.Server;
  readonly #ws: WebSocketServer;
  /**
   * The real client of each connection handed over (a balancer's PROXY header may have named it), by the socket and
   * by its address and port (Deno's HTTP server may show a request's socket as another object).
   */
  readonly #peers = new WeakMap<object, { ip: string; port: number }>();
  readonly #peersByKey = new Map<string, { ip: string; port: number }>();

  constructor(private readonly options: WebFrontOptions) {
    // A request head must come within the handshake time; a body (an upload) may take as long as it needs while it
    // moves, and a connection silent for the idle time is closed.
    this.#http = http.createServer(
      // Node enforces headersTimeout only on servers that listen themselves: this one is handed its connections, so
      // each head's deadline is kept here (#arm).
      { maxHeaderSize: MAX_HEAD_BYTES, requestTimeout: 0 },
      (req, res) => this.#request(req, res),
    );
    this.#http.keepAliveTimeout = 5000;
    this.#http.timeout = options.idleTimeoutMs;
    this.#http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const code = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      if ((socket as { writable?: boolean }).writable) {
        refuseRaw(socket, code);
      } else {
        socket.destroy();
      }
    });
    // One WebSocket message carries at most one frame of the protocol: its 9-byte header and the largest payload.
    this.#ws = new WebSocketServer({ noServer: true, maxPayload: options.maxData + 64, perMessageDeflate: false });
    this.#http.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
  }

  /** Takes a TLS connection whose client chose HTTP (ALPN `http/1.1`). */
  accept(socket: Duplex, peer: { ip: string; port: number }): void {
    this.#peers.set(socket, peer);
    this.#arm(socket);
    socket.once('close', () => this.#disarm(socket));
    const key = _keyOf(socket);
    if (key !== null) {
      this.#peersByKey.set(key, peer);
      socket.once('close', () => this.#peersByKey.delete(key));
    }
    this.#http.emit('connection', socket);
  }

  readonly #deadlines = new WeakMap<object, NodeJS.Timeout>();

  /**
   * A request head must be complete within the handshake time (at first, and after each response on the connection);
   * one deadline per connection, cleared when it closes (accept).
   */
  #arm(socket: Duplex): void {
    clearTimeout(this.#deadlines.get(socket));
    const timer = setTimeout(() => {
      this.options.log(`[${this.#peerOf(socket).ip}] HTTP request head not complete within ${this.options.headTimeoutMs} ms: closed`);
      socket.destroy();
    }, this.options.headTimeoutMs);
    timer.unref();
    this.#deadlines.set(socket, timer);
  }

  #disarm(socket: Duplex): void {
    clearTimeout(this.#deadlines.get(socket));
  }

  #peerOf(socket: Duplex): { ip: string; port: number } {
    const key = _keyOf(socket);
    return this.#peers.get(socket) ?? (key === null ? undefined : this.#peersByKey.get(key)) ?? { ip: '?', port: 0 };
  }

  #request(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.#disarm(req.socket);
    res.once('finish', () => !req.socket.destroyed && this.#arm(req.socket));
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    if (req.method !== 'GET' && req.method !== 'HEAD' && !(req.url ?? '').startsWith('/ul/')) {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Length': 0 }).end();
      return;
    }
    const path = (req.url ?? '/').split('?')[0] as string;
    if (path.startsWith('/ul/')) {
      if (req.method !== 'PUT') {
        res.writeHead(405, { Allow: 'PUT', 'Content-Length': 0 }).end();
        return;
      }
      this.#upload(path, req, res);
      return;
    }
    if (path.startsWith('/dl/')) {
      if (req.method !== 'GET') {
        res.writeHead(405, { Allow: 'GET', 'Content-Length': 0 }).end();
        return;
      }
      void this.#download(path, req, res);
      return;
    }
    const asset: Asset | undefined = ASSETS[path === '/' ? '/index.html' : path];
    if (asset === undefined) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end(path === '/ws' ? 'A WebSocket is opened here, by the page\n' : 'Not found\n');
      return;
    }
    if (req.headers['if-none-match'] === asset.etag) {
      res.writeHead(304, { ETag: asset.etag }).end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': asset.type,
      'Content-Length': asset.body.length,
      ETag: asset.etag,
      // The page itself is looked at again each time (it names its assets by content); the assets are immutable.
      'Cache-Control': path === '/' || path === '/index.html' ? 'no-cache' : 'public, max-age=31536000, immutable',
    });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  }

  /**
   * PUT /ul/<token>: an upload's bytes (`put` with `link`), once, from the address that asked for it. They go into
   * the session's own queue, as DATA frames would, and the request is paused whenever the session is: the session's
   * checks (size, SHA-256 at `end`) apply unchanged. 204 once every byte is handed over; the client then sends `end`.
   * A body cut short interrupts the upload as a dropped connection would: the part that came is kept for a resume.
   */
  #upload(path: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    const peer = this.#peerOf(req.socket);
    const token = /^\/ul\/([A-Za-z0-9_-]{32})$/.exec(path)?.[1];
    const feed = token === undefined ? null : this.options.links.takeUpload(token, peer.ip);
    // The answer goes out first, then the connection closes (destroying the request at once can lose the answer:
    // seen on Deno); a body still coming is read and dropped meanwhile.
    const refuse = (status: number, text: string) => {
      req.resume();
      if (res.headersSent) return void req.destroy();
      res.once('finish', () => req.destroy());
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' }).end(`${text}\n`);
    };
    if (feed === null) return refuse(404, 'This upload link was used already, has expired, or is not yours');
    const off = feed.onFlow((paused) => (paused ? req.pause() : req.resume()));
    // The body comes in pieces of a TLS record or so; handed over one by one, each would be a write of its own. They go
    // in runs of LINK_BATCH, as the protocol's DATA frames do (the rest at the end, or when the connection drops), as
    // the pieces themselves: the session writes and hashes them in order without copying them into one buffer.
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let gone = false;
    const flush = (): boolean => {
      if (gone || pendingBytes === 0) return !gone;
      const run = pending;
      pending = [];
      pendingBytes = 0;
      if (feed.data(run)) return true;
      gone = true;
      off();
      refuse(409, 'The upload is not in progress any more (see the reply on your connection)');
      return false;
    };
    req.on('data', (chunk: Buffer) => {
      if (gone) return;
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= LINK_BATCH) flush();
    });
    req.on('end', () => {
      if (!flush()) return;
      off();
      if (!res.headersSent) res.writeHead(204).end();
    });
    // A body cut short (the browser's connection dropped): the upload is interrupted, its part kept for a resume.
    const closed = () => {
      off();
      if (!req.complete && flush()) feed.lost();
    };
    req.once('close', closed);
    req.once('error', closed);
  }

  /** GET /dl/<token>/<name>: the file of a link, once, to the address that asked for it, streamed. */
  async #download(path: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const peer = this.#peerOf(req.socket);
    const token = /^\/dl\/([A-Za-z0-9_-]{32})(?:\/[^/]*)?$/.exec(path)?.[1];
    const target = token === undefined ? null : this.options.links.take(token, peer.ip);
    const gone = (status: number, text: string) => {
      if (!res.headersSent) res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' }).end(`${text}\n`);
      else res.destroy();
    };
    if (target === null) return gone(404, 'This download link was used already, has expired, or is not yours: download the file again from the page');
    const started = performance.now();
    let sent = 0;
    let file: OpenedFile;
    try {
      file = await this.options.openFile(target);
    } catch (err) {
      this.options.downloaded(target, peer, { bytes: 0, ms: performance.now() - started, error: (err as { code?: string }).code ?? 'internal' });
      return gone((err as { code?: string }).code === 'not_found' ? 404 : 500, `Cannot download it: ${escapeText((err as Error).message, 200)}`);
    }
    const name = target.path.split('/').filter(Boolean).pop() ?? 'download';
    let error: string | undefined;
    try {
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': file.size,
        'Content-Disposition': `attachment; filename*=UTF-8''${encodeURIComponent(name)}`,
        'Cache-Control': 'no-store',
      });
      const chunk = Buffer.allocUnsafe(256 * 1024);
      while (sent < file.size) {
        if (res.destroyed) throw Object.assign(new Error('the browser went away'), { code: 'connection_lost' });
        const n = await file.readInto(chunk, sent);
        if (n === 0) throw Object.assign(new Error('the file shrank while being sent'), { code: 'size_mismatch' });
        sent += n;
        if (!res.write(Buffer.from(chunk.subarray(0, n)))) await new Promise<void>((r) => (res.once('drain', r), res.once('close', r)));
      }
      res.end();
    } catch (err) {
      error = (err as { code?: string }).code ?? 'internal';
      res.destroy();
    } finally {
      await file.close().catch(() => {});
      this.options.downloaded(target, peer, { bytes: sent, ms: performance.now() - started, ...(error !== undefined ? { error } : {}) });
    }
  }

  #upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#disarm(socket);
    const peer = this.#peerOf(socket);
    const refuse = (status: number, why: string) => {
      this.options.log(`[${peer.ip}:${peer.port}] WebSocket refused: ${why}`);
      refuseRaw(socket, status);
    };
    if ((req.url ?? '').split('?')[0] !== '/ws') return refuse(404, `no WebSocket at ${escapeText(req.url ?? '', 80)}`);
    // A page from another site must not open a session with the user's browser (cross-site WebSocket hijacking):
    // the Origin must be this very server, as the browser reached it.
    const origin = req.headers.origin;
    const host = req.headers.host;
    if (origin === undefined || host === undefined || origin !== `https://${host}`) {
      return refuse(403, `origin ${escapeText(String(origin ?? 'missing'), 80)} is not https://${escapeText(String(host ?? '?'), 80)}`);
    }
    this.#ws.handleUpgrade(req, socket, head, (ws) => {
      const stream = createWebSocketStream(ws, { allowHalfOpen: false });
      stream.on('error', () => {}); // the session reports the end of its connection
      // ws's stream reports its close only once the socket has finished writing, which a socket the network reset never
      // does (the session would hold its uploads until the idle time-out): once the WebSocket is closed and what came
      // on it has been read, the stream is done.
      stream.on('end', () => {
        if (ws.readyState === ws.CLOSED) stream.destroy();
      });
      let idle = setTimeout(() => ws.terminate(), this.options.idleTimeoutMs);
      const touch = () => {
        clearTimeout(idle);
        idle = setTimeout(() => ws.terminate(), this.options.idleTimeoutMs);
      };
      ws.on('message', touch);
      ws.on('close', () => clearTimeout(idle));
      this.options.openSession(stream, peer);
    });
  }

  close(): void {
    for (const client of this.#ws.clients) client.terminate();
    this.#ws.close();
    this.#http.close();
    this.#http.closeAllConnections?.();
  }
}

function _keyOf(socket: Duplex): string | null {
  const s = socket as { remoteAddress?: string; remotePort?: number };
  return s.remoteAddress === undefined ? null : `${s.remoteAddress}:${s.remotePort ?? 0}`;
}
