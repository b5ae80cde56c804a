// A raw ferry client for hardening tests: TLS (or TCP), the frame decoder, and helpers to wait for replies.
import net from 'node:net';
import tls from 'node:tls';
import { FrameDecoder, PREAMBLE, encodeData, encodeMessage, parseServerMessage, type ServerMessage } from '../../src/protocol/mod.ts';

export type Reply = { id: number; msg: ServerMessage };

export class RawClient {
  readonly socket: net.Socket;
  readonly replies: Reply[] = [];
  readonly data = new Map<number, number>();
  /** The DATA bytes received per id, kept when `keepData` is set. */
  readonly received = new Map<number, Buffer[]>();
  keepData = false;
  readonly closed: Promise<number>;
  readonly connected: Promise<void>;
  private waiters: Array<() => void> = [];
  private nextId = 1;

  constructor(port: number, options: { insecure?: boolean; host?: string; localAddress?: string } = {}) {
    const decoder = new FrameDecoder(
      {
        onMessage: (id, body) => {
          this.replies.push({ id, msg: parseServerMessage(body) });
          this.wake();
        },
        onData: (id, chunk) => {
          this.data.set(id, (this.data.get(id) ?? 0) + chunk.length);
          if (this.keepData) this.received.set(id, [...(this.received.get(id) ?? []), Buffer.from(chunk)]);
        },
      },
      { maxMessage: 1 << 20, maxData: 1 << 24 },
      true,
    );
    const host = options.host ?? '127.0.0.1';
    let ready!: () => void;
    this.connected = new Promise((r) => (ready = r));
    this.socket = options.insecure
      ? net.connect({ host, port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) }, () => ready())
      : tls.connect({ host, port, rejectUnauthorized: false, ...(options.localAddress ? { localAddress: options.localAddress } : {}) }, () => ready());
    this.socket.on('data', (d: Buffer) => {
      try {
        decoder.push(d);
      } catch {
        this.socket.destroy();
      }
    });
    this.socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      this.socket.on('close', () => {
        resolve(Date.now());
        this.wake();
      }),
    );
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get isClosed(): boolean {
    return this.socket.destroyed || this.socket.readyState === 'closed';
  }

  write(bytes: Buffer | Uint8Array): void {
    this.socket.write(bytes);
  }

  hello(features: string[] = ['resume']): void {
    this.write(Buffer.concat([Buffer.from(PREAMBLE), encodeMessage(0, { t: 'hello', v: 1, agent: 'hardening', features })]));
  }

  /** Sends a request; returns its id. */
  send(message: object, id = this.nextId++): number {
    this.write(encodeMessage(id, message));
    return id;
  }

  sendData(id: number, bytes: Buffer): void {
    for (const part of encodeData(id, bytes)) this.write(part);
  }

  /** The first reply to `id` that satisfies `pred` (default: any), waiting up to `ms`. */
  async reply(id: number, ms = 10_000, pred: (m: ServerMessage) => boolean = () => true): Promise<ServerMessage> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.replies.find((r) => r.id === id && pred(r.msg));
      if (found) return found.msg;
      if (this.isClosed) throw new Error(`connection closed before a reply to ${id} (got ${JSON.stringify(this.replies.map((r) => r.msg))})`);
      if (Date.now() > deadline) throw new Error(`no reply to ${id} within ${ms} ms`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, Math.max(1, deadline - Date.now())).unref();
      });
    }
  }

  /** hello + signup (or login); resolves with the reply. */
  async logIn(user: string, password: string, signup = false, features?: string[]): Promise<ServerMessage> {
    this.hello(features);
    await this.reply(0, 10_000, (m) => m.t === 'welcome');
    const id = this.send({ t: signup ? 'signup' : 'login', user, password });
    return this.reply(id, 20_000);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export const codes = (c: RawClient) => c.replies.map((r) => (r.msg.t === 'error' ? r.msg.code : r.msg.t));
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
