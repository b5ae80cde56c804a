/**
 * The per-user transfer limit across servers. Each server counts its own transfers in memory (server/session/
 * transfers.ts) and keeps one row per user in transfer_slots; a new transfer is allowed when this server's count
 * plus the rows of the other live servers stay under the limit — checked and recorded in one transaction, under a
 * lock on the user, so two servers cannot both take the last slot. A server's row may be higher than its count for
 * up to a beat after a transfer ends (then a transfer elsewhere may be refused with `busy` a moment early); it is
 * never lower.
 */
import { FerryError } from '../core/errors.ts';
import type { Database } from './pool.ts';
import { liveServer } from './servers.ts';

export class DbTransferSlots {
  /** What this server last wrote per user. */
  readonly #written = new Map<string, number>();

  constructor(
    private readonly db: Database,
    private readonly serverId: string,
  ) {}

  /** Takes one more slot for `user`, who has `local` transfers here, or throws `busy`. */
  async claim(user: string, local: number, max: number): Promise<void> {
    const key = user.toLowerCase();
    await this.db.transaction(async (q) => {
      await q.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`slots:${key}`]);
      const [row] = await q.query<{ n: number }>(
        `SELECT coalesce(sum(in_flight), 0)::int AS n FROM transfer_slots WHERE username = $1 AND server_id <> $2 AND ${liveServer('server_id')}`,
        [key, this.serverId],
      );
      const total = (row?.n ?? 0) + local;
      if (total >= max) throw new FerryError('busy', `You have ${total} transfers in progress on all servers (the limit is ${max}); try again when one ends`);
      await q.query(
        `INSERT INTO transfer_slots (server_id, username, in_flight) VALUES ($1, $2, $3)
         ON CONFLICT (server_id, username) DO UPDATE SET in_flight = $3`,
        [this.serverId, key, local + 1],
      );
    });
    this.#written.set(key, local + 1);
  }

  /** Writes this server's counts (by user name in lower case) where they changed since last written. */
  async publish(counts: ReadonlyMap<string, number>): Promise<void> {
    const changed: Array<[string, number]> = [];
    for (const [user, n] of counts) if (this.#written.get(user) !== n) changed.push([user, n]);
    for (const user of this.#written.keys()) if (!counts.has(user)) changed.push([user, 0]);
    if (changed.length === 0) return;
    const counted = changed.filter(([, n]) => n > 0);
    const ended = changed.filter(([, n]) => n === 0).map(([user]) => user);
    if (counted.length > 0) {
      await this.db.query(
        `INSERT INTO transfer_slots (server_id, username, in_flight) SELECT $1, u, n FROM unnest($2::text[], $3::int[]) AS t(u, n)
         ON CONFLICT (server_id, username) DO UPDATE SET in_flight = excluded.in_flight`,
        [this.serverId, counted.map((c) => c[0]), counted.map((c) => c[1])],
      );
    }
    if (ended.length > 0) await this.db.query('DELETE FROM transfer_slots WHERE server_id = $1 AND username = ANY($2::text[])', [this.serverId, ended]);
    for (const [user, n] of changed) {
      if (n === 0) this.#written.delete(user);
      else this.#written.set(user, n);
    }
  }
}
