import { FerryError } from '../../core/errors.ts';

/** A connection's transfers in flight, as the per-user limit counts them. */
export interface TransferCounter {
  readonly transfersInFlight: number;
}

/**
 * The per-user transfer limit across all of a user's connections to this server: uploads plus downloads in
 * flight, and the ones being set up. One per server (the server context).
 */
export class TransferSlots {
  readonly #users = new Map<string, { sessions: Set<TransferCounter>; pending: number }>();

  constructor(readonly max: number) {}

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
  reserve(user: string): () => void {
    const entry = this.#entry(user);
    let inFlight = entry.pending;
    for (const s of entry.sessions) inFlight += s.transfersInFlight;
    if (inFlight >= this.max) throw new FerryError('busy', `You have ${inFlight} transfers in progress (the limit is ${this.max}); try again when one ends`);
    entry.pending++;
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
