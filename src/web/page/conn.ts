/**
 * The ferry protocol in the browser, over one WebSocket to the server that served the page: the same preamble and
 * frames (docs/protocol.md §3) as over TLS, in binary messages. Requests are routed by id; a request resolves with
 * its `ok` result and gives its intermediate messages (pages of entries, events, `resume`) to `onMessage`.
 */
import { HEADER_SIZE, PREAMBLE, PROTOCOL_VERSION } from './constants.ts';

export const MSG = 1;
export const DATA = 2;

/** A server message: `t` and its fields. */
export type Message = { t: string } & Record<string, unknown>;

/** A failed request or connection: the server's code (docs/protocol.md §7) and message. */
export class FerryPageError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Pending {
  resolve(result: unknown): void;
  reject(err: FerryPageError): void;
  onMessage?: (msg: Message) => void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes waiting to go out on the WebSocket above which a sender waits (`drained`), until they fall below LOW_WATER. */
const HIGH_WATER = 8 * 1024 * 1024;
const LOW_WATER = 4 * 1024 * 1024;

export interface Welcome {
  agent: string;
  features: string[];
  maxData: number;
  signup: string;
}

/**
 * @example
 * ```ts
 * const conn = await Connection.open();
 * await conn.request({ t: 'login', user, password });
 * await conn.request({ t: 'list', path: '' }, (m) => console.log(m.entries));
 * ```
 */
export class Connection {
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #buffer = new Uint8Array(0);
  #preambleSeen = false;
  #closed: FerryPageError | null = null;
  readonly #closeWaiters: Array<(err: FerryPageError) => void> = [];
  welcome!: Welcome;

  private constructor(private readonly ws: WebSocket) {}

  /** Opens the WebSocket, exchanges preambles, hello/welcome. */
  static open(agent = 'ferry-web/1'): Promise<Connection> {
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
    ws.binaryType = 'arraybuffer';
    const conn = new Connection(ws);
    return new Promise((resolve, reject) => {
      ws.onerror = () => reject(new FerryPageError('connection_lost', 'Cannot reach the server'));
      ws.onopen = () => {
        ws.send(PREAMBLE);
        conn.#send(0, { t: 'hello', v: PROTOCOL_VERSION, agent, features: ['resume', 'too_large', 'unavailable', 'link'] });
        conn.#pending.set(0, {
          resolve: (w) => {
            conn.welcome = w as Welcome;
            resolve(conn);
          },
          reject,
        });
      };
      ws.onmessage = (ev) => conn.#receive(new Uint8Array(ev.data as ArrayBuffer));
      ws.onclose = (ev) => conn.#fail(conn.#closed ?? new FerryPageError('connection_lost', ev.reason || 'The connection was closed'));
    });
  }

  get closed(): boolean {
    return this.#closed !== null;
  }

  /** Called once when the connection ends, with why. */
  onClose(handler: (err: FerryPageError) => void): void {
    if (this.#closed) handler(this.#closed);
    else this.#closeWaiters.push(handler);
  }

  /** Sends a request; resolves with its `ok` result, rejects with its `error`. */
  request<R = unknown>(message: Message, onMessage?: (msg: Message) => void): Promise<R> {
    const id = this.#nextId++;
    return this.requestOn(id, message, onMessage) as Promise<R>;
  }

  /** A fresh request id (for a request whose follow-ups the caller sends itself). */
  newId(): number {
    return this.#nextId++;
  }

  requestOn(id: number, message: Message, onMessage?: (msg: Message) => void): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, ...(onMessage ? { onMessage } : {}) });
      this.#send(id, message);
    });
  }

  /** Sends a follow-up message on a request's id (`from`, `end`, `cancel`). */
  follow(id: number, message: Message): void {
    this.#send(id, message);
  }

  /** Sends one DATA frame: its header and its bytes as two messages (a message may hold any part of the stream), so the bytes are not copied. */
  data(id: number, bytes: Uint8Array): void {
    const header = new Uint8Array(HEADER_SIZE);
    const view = new DataView(header.buffer);
    view.setUint8(0, DATA);
    view.setUint32(1, id);
    view.setUint32(5, bytes.length);
    this.ws.send(header);
    this.ws.send(bytes);
  }

  /**
   * Resolves when little enough is waiting to go out: the WebSocket API has no back-pressure of its own, only the
   * count of bytes queued, which is watched here (a few ms apart) until it falls below a low mark.
   */
  async drained(): Promise<void> {
    if (this.ws.bufferedAmount <= HIGH_WATER) return;
    while (this.ws.bufferedAmount > LOW_WATER && !this.#closed) await new Promise((r) => setTimeout(r, 2));
  }

  close(): void {
    if (this.#closed) return;
    try {
      this.#send(this.#nextId++, { t: 'bye' });
    } catch {
      // already going
    }
    this.ws.close();
  }

  #send(id: number, message: object): void {
    if (this.ws.readyState !== WebSocket.OPEN) throw this.#closed ?? new FerryPageError('connection_lost', 'The connection is closed');
    const body = encoder.encode(JSON.stringify(message));
    const frame = new Uint8Array(HEADER_SIZE + body.length);
    const view = new DataView(frame.buffer);
    view.setUint8(0, MSG);
    view.setUint32(1, id);
    view.setUint32(5, body.length);
    frame.set(body, HEADER_SIZE);
    this.ws.send(frame);
  }

  #receive(bytes: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + bytes.length);
    joined.set(this.#buffer);
    joined.set(bytes, this.#buffer.length);
    let at = 0;
    if (!this.#preambleSeen) {
      if (joined.length < PREAMBLE.length) {
        this.#buffer = joined;
        return;
      }
      if (!PREAMBLE.every((b, i) => joined[i] === b)) return this.#fail(new FerryPageError('bad_preamble', 'The server did not answer as a ferry server'));
      this.#preambleSeen = true;
      at = PREAMBLE.length;
    }
    const view = new DataView(joined.buffer, joined.byteOffset, joined.byteLength);
    while (joined.length - at >= HEADER_SIZE) {
      const kind = view.getUint8(at);
      const id = view.getUint32(at + 1);
      const length = view.getUint32(at + 5);
      if (joined.length - at - HEADER_SIZE < length) break;
      const payload = joined.subarray(at + HEADER_SIZE, at + HEADER_SIZE + length);
      at += HEADER_SIZE + length;
      if (kind === MSG) this.#message(id, JSON.parse(decoder.decode(payload)) as Message);
      // DATA is never asked for on this connection: downloads go by HTTPS links.
    }
    this.#buffer = joined.slice(at);
  }

  #message(id: number, msg: Message): void {
    const pending = this.#pending.get(id);
    if (id === 0 && msg.t === 'error') return this.#fail(new FerryPageError(String(msg.code), String(msg.message)));
    if (!pending) return;
    if (msg.t === 'welcome') {
      this.#pending.delete(id);
      pending.resolve(msg);
    } else if (msg.t === 'ok') {
      this.#pending.delete(id);
      pending.resolve(msg.result ?? null);
    } else if (msg.t === 'error') {
      this.#pending.delete(id);
      pending.reject(new FerryPageError(String(msg.code), String(msg.message)));
    } else {
      pending.onMessage?.(msg);
    }
  }

  #fail(err: FerryPageError): void {
    if (this.#closed) return;
    this.#closed = err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    for (const w of this.#closeWaiters.splice(0)) w(err);
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close();
  }
}
