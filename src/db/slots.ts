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

/** Sets this server's rows for users ($2, lower case) to their counts ($3). */
const UPSERT = `INSERT INTO transfer_slots (server_id, username, in_flight) SELECT $1, u, n FROM unnest($2::text[], $3::int[]) AS t(u, n)
  ON CONFLICT (server_id, username) DO UPDATE SET in_flight = excluded.in_flight`;

export class DbTransferSlots {
  /** What this server last wrote per user. */
  readonly #written = new Map<string, number>();

  constructor(
    private readonly db: Database,
    private readonly serverId: string,
  ) {}

  /**
   * Takes one more slot for `user` (lower case), who has `local` transfers here, or throws `busy`. Called in the
   * user's turn (server/session/transfers.ts): the row written is this server's count, never an older one.
   */
  async claim(user: string, local: number, max: number): Promise<void> {
    await this.db.transaction(async (q) => {
      await q.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`slots:${user}`]);
      const [row] = await q.query<{ n: number }>(
        `SELECT coalesce(sum(in_flight), 0)::int AS n FROM transfer_slots WHERE username = $1 AND server_id <> $2 AND ${liveServer('server_id')}`,
        [user, this.serverId],
      );
      const total = (row?.n ?? 0) + local;
      if (total >= max) throw new FerryError('busy', `You have ${total} transfers in progress on all servers (the limit is ${max}); try again when one ends`);
      await q.query(UPSERT, [this.serverId, [user], [local + 1]]);
    });
    this.#written.set(user, local + 1);
  }

  /** Records this server's counts by user (lower case; 0: none left), in one statement each for the rows kept and gone. */
  async record(counts: ReadonlyMap<string, number>): Promise<void> {
    const kept = [...counts].filter(([, n]) => n > 0);
    const gone = [...counts].filter(([, n]) => n <= 0).map(([user]) => user);
    if (kept.length > 0) {
      await this.db.query(UPSERT, [this.serverId, kept.map(([user]) => user), kept.map(([, n]) => n)]);
      for (const [user, n] of kept) this.#written.set(user, n);
    }
    if (gone.length > 0) {
      await this.db.query('DELETE FROM transfer_slots WHERE server_id = $1 AND username = ANY($2::text[])', [this.serverId, gone]);
      for (const user of gone) this.#written.delete(user);
    }
  }

  /** What this server last wrote, by user (users with no row left out). */
  recorded(): ReadonlyMap<string, number> {
    return this.#written;
  }
}
