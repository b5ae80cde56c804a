import pLimit, { type LimitFunction } from 'p-limit';
import { FerryError } from '../../core/errors.ts';

/** A connection's transfers in flight, as the per-user limit counts them. */
export interface TransferCounter {
  readonly transfersInFlight: number;
}

/**
 * Where other servers' transfers are counted (src/db/slots.ts, several servers on one database), by user name in
 * lower case. TransferSlots calls both in the user's turn (one at a time per user), so what reaches the database
 * in order is this server's count in order.
 */
export interface SharedSlots {
  /** Takes one more slot for a user who has `local` transfers on this server (their count here becomes local + 1), or throws `busy`. */
  claim(user: string, local: number, max: number): Promise<void>;
  /** Records the users' counts on this server as they are now (0: none left), in one write. */
  record(counts: ReadonlyMap<string, number>): Promise<void>;
  /** What was last recorded, by user (users with none left out). */
  recorded(): ReadonlyMap<string, number>;
}

interface UserEntry {
  readonly sessions: Set<TransferCounter>;
  pending: number;
}

/**
 * The per-user transfer limit across all of a user's connections to this server (and, with `shared`, to every
 * server on the same database): uploads plus downloads in flight, and the ones being set up. One per server (the
 * server context). User names count case-insensitively, as accounts do.
 */
export class TransferSlots {
  readonly #users = new Map<string, UserEntry>();
  /** With `shared`: each user's turn (their claims and recorded counts, one at a time), while one is queued. */
  readonly #turns = new Map<string, { limit: LimitFunction; queued: number }>();

  constructor(
    readonly max: number,
    private readonly shared: SharedSlots | null = null,
  ) {}

  /** Each user's transfers on this server (user names in lower case). */
  #counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [key, entry] of this.#users) {
      const n = inFlight(entry);
      if (n > 0) counts.set(key, n);
    }
    return counts;
  }

  /** A connection that logged in as `user` counts toward their limit until `leave`. */
  join(user: string, session: TransferCounter): void {
    this.#entry(user.toLowerCase()).sessions.add(session);
  }

  leave(user: string, session: TransferCounter): void {
    const key = user.toLowerCase();
    const entry = this.#users.get(key);
    if (!entry) return;
    entry.sessions.delete(session);
    this.#forgetIdle(key, entry);
  }

  /**
   * Reserves one of the user's slots while a transfer is set up; `busy` when none is free. The returned function
   * gives the reservation back, once the transfer is counted by its connection (or failed).
   */
  async reserve(user: string): Promise<() => void> {
    const key = user.toLowerCase();
    const shared = this.shared;
    if (shared === null) {
      this.#check(key);
      return this.#take(key);
    }
    return this.#inTurn(key, async () => {
      await shared.claim(key, this.#check(key), this.max);
      return this.#take(key);
    });
  }

  /**
   * Records each user's count on this server in the shared count where it changed since last recorded (a claim
   * records its own rise; this brings the falls), in one write: every such user's turn is taken first (after their
   * claims in progress), and their counts as they are then are written. No-op without `shared`.
   */
  async publish(): Promise<void> {
    const shared = this.shared;
    if (shared === null) return;
    const now = this.#counts();
    const last = shared.recorded();
    const changed = [...new Set([...now.keys(), ...last.keys()])].filter((key) => (now.get(key) ?? 0) !== (last.get(key) ?? 0));
    if (changed.length === 0) return;
    let written: () => void = () => {};
    const writing = new Promise<void>((resolve) => (written = resolve));
    let allIn: () => void = () => {};
    const allTaken = new Promise<void>((resolve) => (allIn = resolve));
    let waiting = changed.length;
    const turns = changed.map((key) =>
      this.#inTurn(key, async () => {
        if (--waiting === 0) allIn();
        await writing;
      }),
    );
    await allTaken;
    try {
      await shared.record(new Map(changed.map((key) => [key, this.#count(key)])));
    } finally {
      written();
      await Promise.all(turns);
    }
  }

  #count(key: string): number {
    const entry = this.#users.get(key);
    return entry ? inFlight(entry) : 0;
  }

  /** The user's transfers here, or `busy` when they have no slot left on this server. */
  #check(key: string): number {
    const n = this.#count(key);
    if (n >= this.max) throw new FerryError('busy', `You have ${n} transfers in progress (the limit is ${this.max}); try again when one ends`);
    return n;
  }

  #take(key: string): () => void {
    const entry = this.#entry(key);
    entry.pending++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.pending--;
      this.#forgetIdle(key, entry);
    };
  }

  /**
   * Runs `task` in the user's turn: after their earlier claims and records, before their later ones. Within it,
   * no other reservation of theirs is being taken on this server, so the count it writes is the count here.
   */
  async #inTurn<T>(key: string, task: () => Promise<T>): Promise<T> {
    let turn = this.#turns.get(key);
    if (!turn) this.#turns.set(key, (turn = { limit: pLimit(1), queued: 0 }));
    turn.queued++;
    try {
      return await turn.limit(task);
    } finally {
      if (--turn.queued === 0 && this.#turns.get(key) === turn) this.#turns.delete(key);
    }
  }

  #entry(key: string): UserEntry {
    let entry = this.#users.get(key);
    if (!entry) this.#users.set(key, (entry = { sessions: new Set(), pending: 0 }));
    return entry;
  }

  #forgetIdle(key: string, entry: UserEntry): void {
    if (entry.sessions.size === 0 && entry.pending === 0 && this.#users.get(key) === entry) this.#users.delete(key);
  }
}

function inFlight(entry: UserEntry): number {
  let n = entry.pending;
  for (const s of entry.sessions) n += s.transfersInFlight;
  return n;
}
