import { FerryError } from '../../core/errors.ts';

/** A connection's transfers in flight, as the per-user limit counts them. */
export interface TransferCounter {
  readonly transfersInFlight: number;
}

/**
 * Where other servers' transfers are counted (src/db/slots.ts, several servers on one database): `claim` takes one
 * more slot for a user who has `local` transfers on this server, or throws `busy`.
 */
export interface SharedSlots {
  claim(user: string, local: number, max: number): Promise<void>;
}

/**
 * The per-user transfer limit across all of a user's connections to this server (and, with `shared`, to every
 * server on the same database): uploads plus downloads in flight, and the ones being set up. One per server (the
 * server context).
 */
export class TransferSlots {
  readonly #users = new Map<string, { sessions: Set<TransferCounter>; pending: number }>();

  constructor(
    readonly max: number,
    private readonly shared: SharedSlots | null = null,
  ) {}

  /** Each user's transfers on this server (user names in lower case), for publishing to the shared count. */
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [user, entry] of this.#users) {
      const n = this.#inFlight(entry);
      if (n > 0) counts.set(user.toLowerCase(), (counts.get(user.toLowerCase()) ?? 0) + n);
    }
    return counts;
  }

  #inFlight(entry: { sessions: Set<TransferCounter>; pending: number }): number {
    let n = entry.pending;
    for (const s of entry.sessions) n += s.transfersInFlight;
    return n;
  }

  /** A connection that logged in as `user` counts toward their limit until `leave`. */
  join(user: string, session: TransferCounter): void {
    this.#entry(user).sessions.add(session);
  }

  leave(user: string, session: TransferCounter): void {
    const entry = this.#users.get(user);
    if (!entry) return;
    entry.sessions.delete(session);
    if (entry.sessions.size === 0 && entry.pending === 0) this.#users.delete(user);
  }

  /**
   * Reserves one of the user's slots while a transfer is set up; `busy` when none is free. The returned function
   * gives the reservation back, once the transfer is counted by its connection (or failed).
   */
  async reserve(user: string): Promise<() => void> {
    const entry = this.#entry(user);
    const inFlight = this.#inFlight(entry);
    if (inFlight >= this.max) throw new FerryError('busy', `You have ${inFlight} transfers in progress (the limit is ${this.max}); try again when one ends`);
    entry.pending++;
    if (this.shared !== null) {
      try {
        await this.shared.claim(user, inFlight, this.max);
      } catch (err) {
        entry.pending--;
        if (entry.sessions.size === 0 && entry.pending === 0 && this.#users.get(user) === entry) this.#users.delete(user);
        throw err;
      }
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.pending--;
      if (entry.sessions.size === 0 && entry.pending === 0 && this.#users.get(user) === entry) this.#users.delete(user);
    };
  }

  #entry(user: string): { sessions: Set<TransferCounter>; pending: number } {
    let entry = this.#users.get(user);
    if (!entry) this.#users.set(user, (entry = { sessions: new Set(), pending: 0 }));
    return entry;
  }
}
