// A TCP relay for the browser tests: between Chromium and a real `ferry serve`, it passes the TLS inside untouched and
// can slow the browser's bytes (so "while an upload is in progress" does not depend on this machine's speed) and cut
// connections, as a network that drops does.
import { once } from 'node:events';
import net from 'node:net';

/**
 * A TCP relay from the browser to a server: the TLS inside passes untouched (the page, its WebSocket, its upload links
 * all go through it). `rate` caps the browser's bytes per second (all connections together); `cut()` drops every
 * connection at once.
 */
export class Relay {
  readonly #sockets = new Set<net.Socket>();
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket; bytes: number }>();
  /** Bytes per second from the browser to the server; Infinity: as fast as they come. */
  rate = Infinity;
  #due = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(target: number): Promise<Relay> {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const relay = new Relay(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (client) => relay.#relay(client, target));
    return relay;
  }

  get connections(): number {
    return this.#sockets.size / 2;
  }

  #relay(client: net.Socket, target: number): void {
    const upstream = net.connect(target, '127.0.0.1');
    const pair = { client, upstream, bytes: 0 };
    this.#pairs.add(pair);
    client.once('close', () => this.#pairs.delete(pair));
    client.on('data', (chunk: Buffer) => (pair.bytes += chunk.length));
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.on('close', () => {
        this.#sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
      s.on('error', () => s.destroy());
    }
    upstream.pipe(client);
    client.on('data', (chunk: Buffer) => {
      const flowing = upstream.write(chunk);
      let wait = 0;
      if (Number.isFinite(this.rate)) {
        const now = Date.now();
        this.#due = Math.max(this.#due, now) + (chunk.length / this.rate) * 1000;
        wait = this.#due - now;
      }
      if (flowing && wait < 20) return;
      client.pause();
      void Promise.all([flowing ? null : once(upstream, 'drain').catch(() => {}), wait >= 20 ? new Promise((r) => setTimeout(r, wait)) : null]).then(() => client.resume());
    });
  }

  /** Drops the one connection that has carried the most bytes from the browser (during an upload: its link's). */
  cutBusiest(): void {
    const busiest = [...this.#pairs].sort((a, b) => b.bytes - a.bytes)[0];
    busiest?.client.destroy();
    busiest?.upstream.destroy();
  }

  /**
   * For the connections open now, what the server sends (its end too: a paused socket does not read it) is held back
   * for `ms`, then goes on (resolves then). Connections made meanwhile are not held.
   */
  async holdReplies(ms: number): Promise<void> {
    const held = [...this.#pairs];
    for (const { client, upstream } of held) {
      upstream.unpipe(client);
      upstream.pause();
    }
    await new Promise((r) => setTimeout(r, ms));
    for (const { client, upstream } of held) upstream.pipe(client);
  }

  /** Drops every connection through the relay, both ways, at once. */
  cut(): void {
    for (const s of this.#sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
