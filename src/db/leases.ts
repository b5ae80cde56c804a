/**
 * One upload per object key across every server on one store (storage/storage.ts NameLeases): a row per key in
 * upload_leases, taken by a server for one upload (or rename) and given back when it ends. A lease of a server that
 * is no longer seen (it died) is free to take; a give that fails (the database away for a moment) is tried again
 * with each beat, so a live server never keeps a key it has let go of.
 */
import { randomUUID } from 'node:crypto';
import type { Database } from './pool.ts';
import { liveServer } from './servers.ts';

export class DbNameLeases {
  /** Gives that failed, tried again by `retry`. */
  readonly #owed = new Map<string, string>();

  constructor(
    private readonly db: Database,
    private readonly serverId: string,
  ) {}

  /**
   * The key for this server (a new token), or null when a live server holds it. This server's own older lease of
   * the key (its give still on the way) is taken over: within one server the key is already held by NameLocks.
   */
  take(key: string): Promise<string | null> {
    const token = randomUUID();
    return this.db.transaction(async (q) => {
      await q.query(`DELETE FROM upload_leases WHERE key = $1 AND server_id <> $2 AND NOT ${liveServer('server_id')}`, [key, this.serverId]);
      const rows = await q.query(
        `INSERT INTO upload_leases (key, server_id, token) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET token = $3, taken_at = now() WHERE upload_leases.server_id = $2
         RETURNING key`,
        [key, this.serverId, token],
      );
      if (rows.length > 0) this.#owed.delete(key);
      return rows.length > 0 ? token : null;
    });
  }

  async give(key: string, token: string): Promise<void> {
    try {
      await this.db.query('DELETE FROM upload_leases WHERE key = $1 AND token = $2', [key, token]);
    } catch (err) {
      this.#owed.set(key, token);
      throw err;
    }
  }

  /** Gives back what could not be given before (each beat). */
  async retry(): Promise<void> {
    for (const [key, token] of [...this.#owed]) {
      await this.db.query('DELETE FROM upload_leases WHERE key = $1 AND token = $2', [key, token]);
      if (this.#owed.get(key) === token) this.#owed.delete(key);
    }
  }
}
