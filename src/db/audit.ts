/**
 * The audit trail in the shared database: every server appends to one table, so RDLOG on any server shows the
 * events of all of them, ordered by their time (microseconds, as in audit.log) and then by arrival. Each event is
 * kept as the very JSON line the embedded audit.log would hold, so it reads back and renders unchanged. Append-only:
 * CLRLOG moves the events into an archive, in one transaction with the `log_clear` event that starts the new trail.
 */
import { asAuditEvent, auditTime, type AuditEvent, type AuditEventInput, type AuditReadFilter, type AuditStore } from '../audit/mod.ts';
import type { Database } from './pool.ts';
import { dbText } from './text.ts';

const _DEFAULT_LIMIT = 1000;

/**
 * @example
 * ```ts
 * const log = new DbAuditLog(db);
 * await log.append({ event: 'login', user: 'ann', address: '10.0.0.1:5000', result: 'ok' });
 * await log.read({ user: 'ann', limit: 50 });
 * ```
 */
export class DbAuditLog implements AuditStore {
  #closed = false;
  /** Events appended while an insert is under way go in together with the next one (one statement per burst). */
  #batch: { rows: Array<[string, string, string]>; written: Promise<void> } | null = null;
  #writing: Promise<unknown> = Promise.resolve();

  constructor(private readonly db: Database) {}

  append(event: AuditEventInput): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('Cannot append to the audit log: it is closed'));
    const { time, ...rest } = event;
    const full = { time: time ?? auditTime(), ...rest };
    const row: [string, string, string] = [full.time, dbText(full.user), JSON.stringify(full)];
    let batch = this.#batch;
    if (batch === null) {
      const rows: Array<[string, string, string]> = [];
      const written = this.#writing.then(async () => {
        if (this.#batch?.rows === rows) this.#batch = null;
        await this.db.query(
          'INSERT INTO audit_events (at, username, line) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])',
          [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])],
        );
      });
      this.#writing = written.catch(() => {});
      batch = this.#batch = { rows, written };
    }
    batch.rows.push(row);
    return batch.written;
  }

  async read(filter: AuditReadFilter = {}): Promise<AuditEvent[]> {
    const limit = Math.floor(filter.limit ?? _DEFAULT_LIMIT);
    await this.#writing;
    if (!(limit > 0)) return [];
    const rows =
      filter.user === undefined
        ? await this.db.query<{ line: string }>('SELECT line FROM (SELECT at, id, line FROM audit_events ORDER BY at DESC, id DESC LIMIT $1) t ORDER BY at, id', [limit])
        : await this.db.query<{ line: string }>(
            'SELECT line FROM (SELECT at, id, line FROM audit_events WHERE username = $1 ORDER BY at DESC, id DESC LIMIT $2) t ORDER BY at, id',
            [dbText(filter.user), limit],
          );
    const events: AuditEvent[] = [];
    for (const { line } of rows) {
      try {
        const event = asAuditEvent(JSON.parse(line));
        if (event && (filter.user === undefined || event.user === filter.user)) events.push(event);
      } catch {
        // not an event we wrote: skipped, as a damaged line of audit.log is
      }
    }
    return events;
  }

  async clear(by: string, address: string): Promise<string> {
    if (this.#closed) throw new Error('Cannot clear the audit log: it is closed');
    await this.#writing;
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('.', '');
    return this.db.transaction(async (q) => {
      // Appends from every server wait while the events move (they queue on the table lock, none is lost).
      await q.query('LOCK TABLE audit_events IN EXCLUSIVE MODE');
      let name = `audit-${stamp}`;
      for (let n = 2; (await q.query('SELECT 1 FROM audit_archives WHERE name = $1', [name])).length > 0; n++) name = `audit-${stamp}-${n}`;
      const [count] = await q.query<{ n: number }>('SELECT count(*)::float8 AS n FROM audit_events');
      await q.query('INSERT INTO audit_archives (name, cleared_by, address, events) VALUES ($1, $2, $3, $4)', [name, dbText(by), dbText(address), count?.n ?? 0]);
      await q.query('INSERT INTO audit_archived (archive, id, at, username, line) SELECT $1, id, at, username, line FROM audit_events', [name]);
      await q.query('DELETE FROM audit_events');
      const entry: AuditEvent = { time: auditTime(), event: 'log_clear', user: by, address, result: 'ok', detail: name };
      await q.query('INSERT INTO audit_events (at, username, line) VALUES ($1, $2, $3)', [entry.time, dbText(by), JSON.stringify(entry)]);
      return name;
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#writing;
  }
}
