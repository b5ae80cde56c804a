/**
 * The servers sharing one database, each seen every few seconds. What a server holds for its connections
 * (transfer slots, quota holds) counts only while the server is seen: a server that died (SIGKILL, a lost machine)
 * stops holding anything within `STALE_AFTER_S` seconds, and the next server to start removes its rows.
 */
import { hostname } from 'node:os';
import process from 'node:process';
import type { Database } from './pool.ts';

/** A server not seen for this long is taken for dead. */
export const STALE_AFTER_S = 30;
const _BEAT_MS = 5000;

/** SQL for "the server `alias`.server_id is alive", for other modules' queries. */
export function liveServer(column: string): string {
  return `${column} IN (SELECT id FROM servers WHERE seen_at > now() - interval '${STALE_AFTER_S} seconds')`;
}

/**
 * @example
 * ```ts
 * const me = await ServerPresence.join(db, (m) => log.warn(m));
 * me.id; // this server's uuid, in rows it owns
 * await me.leave();
 * ```
 */
export class ServerPresence {
  readonly #timer: NodeJS.Timeout;
  readonly #tasks: Array<() => Promise<unknown>> = [];

  private constructor(
    private readonly db: Database,
    readonly id: string,
    private readonly warn: (message: string) => void,
  ) {
    this.#timer = setInterval(() => void this.#beat(), _BEAT_MS);
    this.#timer.unref();
  }

  static async join(db: Database, warn: (message: string) => void): Promise<ServerPresence> {
    const id = db.serverId;
    await db.query('INSERT INTO servers (id, name) VALUES ($1, $2)', [id, `${hostname()}:${process.pid}`]);
    await db.query(`DELETE FROM servers WHERE seen_at < now() - interval '${STALE_AFTER_S * 10} seconds'`);
    await db.query(`DELETE FROM transfer_slots WHERE server_id NOT IN (SELECT id FROM servers)`);
    await db.query(`DELETE FROM upload_leases WHERE server_id NOT IN (SELECT id FROM servers)`);
    return new ServerPresence(db, id, warn);
  }

  /** Runs `task` with each beat (pruning old throttle entries, publishing counts); its failures are only logged. */
  every(task: () => Promise<unknown>): void {
    this.#tasks.push(task);
  }

  async #beat(): Promise<void> {
    try {
      await this.db.query('UPDATE servers SET seen_at = now() WHERE id = $1', [this.id]);
      for (const task of this.#tasks) await task();
    } catch (err) {
      this.warn(`database upkeep failed: ${(err as Error).message}`);
    }
  }

  /** Stops beating and removes this server and what it held. */
  async leave(): Promise<void> {
    clearInterval(this.#timer);
    await this.db.query('DELETE FROM transfer_slots WHERE server_id = $1', [this.id]).catch(() => {});
    await this.db.query('DELETE FROM upload_leases WHERE server_id = $1', [this.id]).catch(() => {});
    await this.db.query('DELETE FROM servers WHERE id = $1', [this.id]).catch(() => {});
  }
}
