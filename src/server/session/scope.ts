import type { AuditEvent } from '../../audit/event.ts';
import type { FerryError } from '../../core/errors.ts';
import type { Account } from '../../auth/types.ts';
import type { Storage } from '../../storage/storage.ts';
import type { FrameTransport } from '../../transport/wire.ts';
import type { ServerContext } from '../context.ts';

/**
 * How a session reaches its client: the ferry protocol's frames over a socket (transport/wire.ts), or anything
 * else that carries the same frames (a WebSocket, a test's fake). The session never sees a socket.
 */
export type SessionTransport = FrameTransport;

export type Stage = 'hello' | 'auth' | 'ready' | 'closed';

/** A logged-in session's account and storage. */
export interface LoggedIn {
  readonly account: Account;
  readonly storage: Storage;
}

/** What the request handlers (handlers.ts and the modules it dispatches to) use of the session they serve. */
export interface SessionScope {
  readonly ctx: ServerContext;
  /** The connection's number on this server, for the console. */
  readonly number: number;
  /** `ip:port` of the client (`[v6]:port`). */
  readonly address: string;
  /** The client's IP address alone (throttles are per address). */
  readonly host: string;
  readonly transport: SessionTransport;
  readonly stage: Stage;
  /** Features agreed in the handshake. */
  readonly features: readonly string[];
  /** The account and its storage once logged in, else null. */
  readonly user: LoggedIn | null;
  /** Writes a console line tagged with the connection (and the user, once logged in). */
  info(line: string): void;
  /**
   * An error as the client is to see it: a FerryError as it is; anything else is unexpected, logged with its
   * stack as a warning, and becomes `internal`.
   */
  problem(err: unknown, request: string): FerryError;
  /** Records an audit event for this connection (time, user and address are filled in). */
  audit(event: Omit<AuditEvent, 'time' | 'user' | 'address'> & { user?: string }): void;
  /** The handshake is done: requests may come. */
  welcomed(features: readonly string[]): void;
  /** Logs in as `account`. */
  becomeUser(account: Account): void;
  /** The session ends from this side (after `bye`, or the client's own error). */
  close(): void;
  /** Reserves one of the user's transfer slots while a transfer is set up (see TransferSlots.reserve). */
  reserveTransfer(): Promise<() => void>;
  /**
   * Pieces of upload `id`'s bytes, in order: a DATA frame's payload, or what came together by its upload link (HTTPS,
   * `link`), into the same queue.
   */
  receiveData(id: number, chunks: readonly Buffer[], link?: boolean): void;
  /** Runs `run` for request `id` after everything the client sent before (in the ingress queue's order). */
  afterQueued(id: number, run: () => Promise<void>): void;
  /** Told when the session stops taking bytes and takes them again; returns its unsubscribe. */
  onFlow(listener: (paused: boolean) => void): () => void;
}
