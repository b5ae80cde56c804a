/**
 * A real HTTP receiver for webhook tests (node:http on 127.0.0.1): checks every request's signature with
 * the secret of its path, answers 401 to a bad one, and records what it got. It can be taken down and
 * brought back on the same port.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verify } from '../../plugins/webhook/sign.ts';

export interface Received {
  id: string;
  /** The event without its id. */
  event: Record<string, unknown>;
  delivery: string;
  at: number;
}

export interface Request {
  path: string;
  status: number;
  delivery: string;
  count: number;
  at: number;
}

export class Receiver {
  /** Events by path, in arrival order, duplicates included. */
  readonly got = new Map<string, Received[]>();
  readonly requests: Request[] = [];
  badSignatures = 0;
  /** Status to answer instead of 200 (after checking the signature), per path. */
  readonly answer = new Map<string, number>();
  port = 0;
  #server: Server | null = null;

  constructor(private readonly secrets: Readonly<Record<string, string>>) {}

  /** Starts listening: on a port chosen by the OS the first time, then on the same port again. */
  async up(): Promise<number> {
    const server = createServer((req, res) => this.#handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.#server = server;
    return this.port;
  }

  /** Stops listening and drops every connection (kept-alive ones too): the endpoint is down. */
  async down(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  events(path: string): Received[] {
    return this.got.get(path) ?? [];
  }

  /** Distinct ids of a path, in the order first seen. */
  ids(path: string): string[] {
    return [...new Set(this.events(path).map((e) => e.id))];
  }

  duplicates(path: string): number {
    return this.events(path).length - this.ids(path).length;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = req.url ?? '/';
      const secret = this.secrets[path];
      const delivery = String(req.headers['x-ferry-delivery'] ?? '');
      const record = (status: number, count: number) => {
        this.requests.push({ path, status, delivery, count, at: Date.now() });
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : status === 401 ? 'bad signature' : 'no');
      };
      if (secret === undefined) return record(404, 0);
      if (req.method !== 'POST' || req.headers['content-type'] !== 'application/json' || !verify(body, req.headers['x-ferry-signature'], secret)) {
        this.badSignatures++;
        return record(401, 0);
      }
      const parsed = JSON.parse(body.toString('utf8')) as { events: Array<Record<string, unknown>> };
      const status = this.answer.get(path) ?? 200;
      if (status === 200) {
        const list = this.got.get(path) ?? [];
        for (const e of parsed.events) {
          const { id, ...event } = e;
          list.push({ id: String(id), event, delivery, at: Date.now() });
        }
        this.got.set(path, list);
      }
      record(status, parsed.events.length);
    });
  }
}
