import { FerryError } from '../../core/errors.ts';
import { joinVirtual, parseVirtualPath } from '../../core/paths.ts';
import type { ClientMessage, ClientMessageOf } from '../../protocol/messages.ts';

/** What arrived from the client: a control message, or a piece of an upload's bytes. */
export type Item =
  | { kind: 'msg'; id: number; msg: ClientMessage; bytes: number }
  /** `chunks`: one DATA frame's payload, or the pieces of an upload link's body that came together. */
  | { kind: 'data'; id: number; chunks: readonly Buffer[]; bytes: number; link?: true }
  /** Work that must come after what arrived before it (an upload link's connection closing: see Uploads). */
  | { kind: 'after'; id: number; run: () => Promise<void>; bytes: 0 };

/** Where the ingress hands what it has put in order. */
export interface IngressSink {
  /** Handles one request or continuation; throws only for a protocol violation (which ends the connection). */
  request(id: number, msg: ClientMessage): Promise<void>;
  /** An upload's bytes: consecutive frames of one upload, together (`link`: they came by its upload link). */
  data(id: number, chunks: Buffer[], link: boolean): Promise<void>;
  /** Ends the connection for a protocol violation. */
  fail(err: Error): void;
  pause(): void;
  resume(): void;
  /** Logged in: a `get` may be opened beside the next requests. */
  isReady(): boolean;
  isClosed(): boolean;
}

/** Incoming bytes queued beyond this pause the socket until the queue is worked off. */
export const QUEUE_HIGH = 4 * 1024 * 1024;
export const QUEUE_LOW = 1 * 1024 * 1024;
/**
 * Bytes queued by every session of the process together beyond which a session holding more than QUEUE_LOW pauses
 * too: many uploads at once (50 sessions x QUEUE_HIGH would be 200 MiB) then each hold about QUEUE_LOW.
 */
export const SHARED_QUEUE_HIGH = 32 * 1024 * 1024;

/** What the sessions of a process have queued, together (see SHARED_QUEUE_HIGH). */
export class SharedQueue {
  bytes = 0;
  constructor(readonly high: number) {}
  get full(): boolean {
    return this.bytes > this.high;
  }
}

const processQueue = new SharedQueue(SHARED_QUEUE_HIGH);

/** Consecutive data frames of one upload are written together, up to this many bytes. */
export const WRITE_BATCH = 2 * 1024 * 1024;
/**
 * Uploads of one session committing at once (fsync, then the rename into place). The frames after an `end` go
 * on while its commit runs; see `waitForCommits` for what waits for it.
 */
export const MAX_COMMITS = 16;
/** Downloads of one session being opened at once (see `opening`). */
export const MAX_OPENING = 16;

/**
 * The session's ingress queue: frames are processed strictly in the order they arrive, so that a pipelined
 * `login` + `list`, or `put a` + `rename a b`, mean what they say. Two kinds of work overlap with what comes
 * after them, without changing what it means: an upload's commit (see `waitForCommits`), and the opening of
 * consecutive `get`s, side by side (a burst of small downloads is checked and read in one hop of the storage's
 * worker); any other request waits until they are open. Bytes queued beyond QUEUE_HIGH pause the client.
 */
export class Ingress {
  readonly #sink: IngressSink;
  readonly #queue: Item[] = [];
  #queuedBytes = 0;
  #pumping = false;
  #pausedForQueue = false;
  /** A plugin's verdict on the connection: nothing is processed before it is known (see `hold`). */
  #gate: Promise<boolean> | null = null;
  /**
   * Uploads committing in the background, by request id, with the path each one commits (null: many paths, a
   * bundle), and how to wait for what they have received so far.
   */
  readonly #commits = new Map<number, { path: string | null; settle: () => Promise<void> }>();
  /** Downloads being opened, by request id. */
  readonly #opening = new Map<number, Promise<void>>();

  readonly #shared: SharedQueue;

  constructor(sink: IngressSink, shared: SharedQueue = processQueue) {
    this.#sink = sink;
    this.#shared = shared;
  }

  /** Nothing is processed until `gate` resolves; false: the connection was refused (nothing will be). */
  hold(gate: Promise<boolean>): void {
    this.#gate = gate;
  }

  enqueue(item: Item): void {
    if (this.#sink.isClosed()) return;
    this.#queue.push(item);
    this.#queuedBytes += item.bytes;
    this.#shared.bytes += item.bytes;
    // Paused until this session's queue is below QUEUE_LOW again (then it may go on, and pause again if the
    // process still holds too much).
    if (!this.#pausedForQueue && (this.#queuedBytes > QUEUE_HIGH || (this.#shared.full && this.#queuedBytes > QUEUE_LOW))) {
      this.#pausedForQueue = true;
      this.#sink.pause();
    }
    if (!this.#pumping) void this.#pump();
  }

  /** Drops what is queued (the connection is gone). */
  clear(): void {
    let dropped = 0;
    for (const item of this.#queue) dropped += item.bytes;
    this.#queue.length = 0;
    this.#queuedBytes -= dropped;
    this.#shared.bytes -= dropped;
  }

  /** Commits in flight: the session waits for them before it reports that it closed. */
  get committing(): Promise<unknown> {
    return Promise.all([...this.#commits.values()].map((c) => c.settle()));
  }

  /**
   * Runs an upload's commit in the background (see `waitForCommits`); `task` never throws (it answers the
   * client itself), except for a protocol violation, which ends the connection. `path` null: a bundle's files.
   */
  commitInBackground(id: number, path: string | null, task: Promise<void>): void {
    const entry = { path: path === null ? null : samePath(path), settle: () => done };
    const done: Promise<void> = task
      .catch((err: unknown) => this.#sink.fail(asError(err)))
      .finally(() => {
        if (this.#commits.get(id) === entry) this.#commits.delete(id);
      });
    this.#commits.set(id, entry);
  }

  /**
   * A bundle whose records are still arriving: each is committed as it comes, and a later request waits (as for
   * a commit) until `settle` says that the records received so far are stored. `untrack` when it ends.
   */
  track(id: number, settle: () => Promise<void>): void {
    this.#commits.set(id, { path: null, settle });
  }

  untrack(id: number): void {
    this.#commits.delete(id);
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      if (this.#gate) {
        const open = await this.#gate;
        this.#gate = null;
        if (!open) return;
      }
      while (this.#queue.length > 0 && !this.#sink.isClosed()) {
        const item = this.#queue.shift() as Item;
        let bytes = item.bytes;
        try {
          if (this.#commits.size > 0) await this.#waitForCommits(item);
          if (item.kind === 'msg' && item.msg.t === 'get' && this.#sink.isReady()) {
            if (this.#opening.size >= MAX_OPENING) await Promise.all(this.#opening.values());
            this.#openInBackground(item.id, item.msg);
            continue;
          }
          if (this.#opening.size > 0) await Promise.all(this.#opening.values());
          if (item.kind === 'data') {
            const chunks = [...item.chunks];
            let batch = item.bytes;
            while (batch < WRITE_BATCH) {
              const next = this.#queue[0];
              if (!next || next.kind !== 'data' || next.id !== item.id || next.link !== item.link) break;
              this.#queue.shift();
              chunks.push(...next.chunks);
              batch += next.bytes;
              bytes += next.bytes;
            }
            await this.#sink.data(item.id, chunks, item.link === true);
          } else if (item.kind === 'after') {
            await item.run();
          } else {
            await this.#sink.request(item.id, item.msg);
          }
        } finally {
          this.#queuedBytes -= bytes;
          this.#shared.bytes -= bytes;
          if (this.#pausedForQueue && this.#queuedBytes < QUEUE_LOW) {
            this.#pausedForQueue = false;
            this.#sink.resume();
          }
        }
      }
    } catch (err) {
      // Only protocol violations get here (request errors are answered by the handlers).
      this.#sink.fail(asError(err));
    } finally {
      this.#pumping = false;
    }
  }

  /** Starts a `get` without waiting for its file to be opened (see `opening`). */
  #openInBackground(id: number, msg: ClientMessageOf<'get'>): void {
    if (this.#opening.has(id)) throw new FerryError('duplicate_id', `Request id ${id} is already in use`);
    const task = this.#sink
      .request(id, msg)
      .catch((err: unknown) => this.#sink.fail(asError(err)))
      .finally(() => this.#opening.delete(id));
    this.#opening.set(id, task);
  }

  /**
   * Uploads commit in the background, so that one file's fsync and rename overlap with the next file's bytes.
   * What the client sent after an `end` must still mean what it says: a request that reads or changes the tree
   * (list, stat, get, rename, delete, mkdir, bye, ...) waits for every commit in flight, a `put` waits for one of
   * the same path (and for a bundle's files received so far), and at most MAX_COMMITS run at once. Data, `end`, `from` and `cancel` of other uploads go
   * straight on.
   */
  async #waitForCommits(item: Item): Promise<void> {
    if (item.kind !== 'msg') return;
    const { msg } = item;
    const commits = [...this.#commits.values()];
    if (msg.t === 'end' || msg.t === 'from' || msg.t === 'cancel' || msg.t === 'error') {
      if (msg.t === 'end' && this.#commits.size >= MAX_COMMITS) await Promise.race(commits.map((c) => c.settle()));
      return;
    }
    if (msg.t === 'put') {
      const path = samePath(msg.path);
      const same = commits.filter((c) => c.path === path || c.path === null);
      if (same.length > 0) await Promise.all(same.map((c) => c.settle()));
      return;
    }
    await Promise.all(commits.map((c) => c.settle()));
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** A path as the storage will see it, so that `./a` and `a` compare equal; an invalid path as it is. */
function samePath(path: string): string {
  try {
    return joinVirtual(parseVirtualPath(path));
  } catch {
    return path;
  }
}
