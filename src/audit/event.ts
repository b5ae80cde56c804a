/** Every kind of audit event. */
export const AUDIT_EVENTS = [
  'login', 'login_failed', 'signup', 'upload', 'download', 'delete', 'rename', 'mkdir', 'log_read', 'log_clear',
] as const;
export type AuditEventType = (typeof AUDIT_EVENTS)[number];

/** One line of the audit log (JSON Lines). Optional fields are omitted, never null. */
export interface AuditEvent {
  /** ISO 8601 UTC with microseconds, e.g. 2024-04-18T12:31:03.694276Z. */
  time: string;
  event: AuditEventType;
  /** The acting user; for login_failed the name that was tried. Always filled. */
  user: string;
  /** Peer address as `ip:port` (IPv6 as `[ip]:port`). */
  address: string;
  result: 'ok' | 'error';
  path?: string;
  /** Rename target. */
  to?: string;
  bytes?: number;
  durationMs?: number;
  sha256?: string;
  /** Error code when result is 'error'. */
  error?: string;
  /** Free text detail (e.g. the archive name for log_clear). */
  detail?: string;
}

const EVENT_TYPES: ReadonlySet<string> = new Set(AUDIT_EVENTS);

/**
 * `value` as an audit event if it has the shape of one (the fields every event has, of the right types), else
 * null. Used on lines read back from the log, and on events a client receives.
 */
export function asAuditEvent(value: unknown): AuditEvent | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const e = value as Record<string, unknown>;
  const ok =
    typeof e['time'] === 'string' &&
    typeof e['event'] === 'string' &&
    EVENT_TYPES.has(e['event']) &&
    typeof e['user'] === 'string' &&
    typeof e['address'] === 'string' &&
    (e['result'] === 'ok' || e['result'] === 'error');
  return ok ? (value as AuditEvent) : null;
}
