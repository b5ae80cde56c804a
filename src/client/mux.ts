import { FerryError, isErrorCode } from '../core/errors.ts';
import type { Entry } from '../core/types.ts';
import type { ServerMessage } from '../protocol/messages.ts';
import { parseEntries, parseResult, type Results, type ResultType } from '../protocol/results.ts';
import { Mailbox } from './mailbox.ts';

/** What a request's mailbox receives: the server's messages and data frames for it, in order. */
export type Incoming = { kind: 'msg'; msg: ServerMessage } | { kind: 'data'; chunk: Buffer };

interface Pending {
  onMessage(msg: ServerMessage): void;
  onData(chunk: Buffer): void;
  onClose(err: Error): void;
}

/** How the multiplexer sends a request. */
export interface MuxWire {
  send(id: number, message: object): boolean;
}

/** The server's error message as a FerryError (an unknown code already became `internal` when parsed). */
export function remoteError(msg: { code: string; message: string }): FerryError {
  return new FerryError(isErrorCode(msg.code) ? msg.code : 'internal', msg.message);
}

/**
 * The client side of pipelining: every request gets an id of its own and a mailbox where the server's replies
 * for it arrive in order, so that any number of requests may be in flight on one connection. A request given up
 * locally (`abandon`) has its late replies dropped until the server's final word on it. Messages for the
 * connection itself (id 0: the welcome, a final error) go to `onConnection`. No I/O of its own: the client feeds
 * it what the wire decoded, and a test can feed it anything.
 */
export class Mux {
  readonly #wire: MuxWire;
  readonly #onConnection: (msg: ServerMessage) => void;
  readonly #pending = new Map<number, Pending>();
  /** Requests given up locally: the server's late frames for them are dropped until its final word. */
  readonly #abandoned = new Set<number>();
  #nextId = 1;
  #closedWith: Error | null = null;

  constructor(wire: MuxWire, onConnection: (msg: ServerMessage) => void) {
    this.#wire = wire;
    this.#onConnection = onConnection;
  }

  /** Why the connection closed, once it has. */
  get closedWith(): Error | null {
    return this.#closedWith;
  }

  /** Requests waiting for their replies. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** A control message from the server. Throws `unexpected_message` for a request that is not open. */
  message(id: number, msg: ServerMessage): void {
    if (id === 0) return this.#onConnection(msg);
    this.#route(id).onMessage(msg);
  }

  /** A data frame from the server. */
  data(id: number, chunk: Buffer): void {
    this.#route(id).onData(chunk);
  }

  /** The connection closed: every open request fails with `reason` (the first reason given is kept). */
  close(reason: Error): void {
    this.#closedWith ??= reason;
    for (const p of this.#pending.values()) p.onClose(this.#closedWith);
    this.#pending.clear();
  }

  /** Remembers why the connection is closing (the server's final error) before the close itself. */
  closing(reason: Error): void {
    this.#closedWith ??= reason;
  }

  /** Opens a request: a new id and the mailbox its replies arrive in. `release` it when done. */
  open(): { id: number; box: Mailbox<Incoming> } {
    if (this.#closedWith) throw this.#closedWith;
    const id = this.#nextId++;
    if (this.#nextId > 0xffff_fff0) this.#nextId = 1;
    const box = new Mailbox<Incoming>();
    this.#pending.set(id, {
      onMessage: (msg) => box.put({ kind: 'msg', msg }),
      onData: (chunk) => box.put({ kind: 'data', chunk }),
      onClose: (e) => box.close(e),
    });
    return { id, box };
  }

  /** The request is finished on this side: later frames for it are refused (unless it was abandoned). */
  release(id: number): void {
    this.#pending.delete(id);
  }

  /** Stops a request the server is still working on; its late replies are ignored. */
  abandon(id: number): void {
    if (this.#closedWith) return;
    this.#abandoned.add(id);
    this.#wire.send(id, { t: 'cancel' });
  }

  /**
   * Sends a request of type `type` and collects its reply: the `ok`'s result, checked against the result table
   * (protocol/results.ts), and the entries or events pages that came before it.
   */
  async call<T extends ResultType>(type: T, message: Record<string, unknown>): Promise<{ result: Results[T]; entries: Entry[]; events: unknown[] }> {
    const { id, box } = this.open();
    const entries: Entry[] = [];
    const events: unknown[] = [];
    try {
      this.#wire.send(id, { ...message, t: type });
      for (;;) {
        const item = await box.next();
        if (item.kind !== 'msg') throw new FerryError('unexpected_message', `Data for a '${type}' request`);
        const msg = item.msg;
        if (msg.t === 'ok') return { result: parseResult(type, msg.result), entries, events };
        if (msg.t === 'error') throw remoteError(msg);
        if (msg.t === 'entries') entries.push(...parseEntries(msg.entries));
        else if (msg.t === 'events' && Array.isArray(msg.events)) events.push(...msg.events);
        else throw new FerryError('unexpected_message', `Unexpected '${msg.t}' for a '${type}' request`);
      }
    } finally {
      this.release(id);
    }
  }

  #route(id: number): Pending {
    const p = this.#pending.get(id);
    if (p) return p;
    if (this.#abandoned.has(id)) return this.#drop(id);
    throw new FerryError('unexpected_message', `The server answered request ${id}, which is not open`);
  }

  #drop(id: number): Pending {
    return {
      onMessage: (msg) => {
        if (msg.t === 'error' || msg.t === 'end' || msg.t === 'ok') this.#abandoned.delete(id);
      },
      onData: () => {},
      onClose: () => {},
    };
  }
}
