import { AUDIT_EVENTS, type AuditEventType } from '../../src/plugin/mod.ts';

/** One receiver of audit events, after validation. */
export interface EndpointOptions {
  /** The URL events are POSTed to (http: or https:). */
  url: string;
  /** Key of the HMAC-SHA256 signature (`x-ferry-signature`). Never logged. */
  secret: string;
  /** Names the endpoint's outbox; defaults to a hash of the URL. Give one to keep the queue when the URL changes. */
  name: string | null;
  /** Event types sent to this endpoint; null means every type. */
  events: ReadonlySet<AuditEventType> | null;
  /** Most events in one POST. */
  batchSize: number;
  /** How long the first queued event may wait for a batch to fill, in ms. */
  flushMs: number;
}

export interface WebhookOptions {
  endpoints: EndpointOptions[];
  /** Ceiling of the retry back-off, in ms (also the pace of retries after a 4xx). */
  maxRetryMs: number;
}

export const DEFAULT_BATCH_SIZE = 50;
export const DEFAULT_FLUSH_MS = 1000;
export const DEFAULT_MAX_RETRY_MS = 60_000;
const MAX_BATCH_SIZE = 1000;
const MAX_FLUSH_MS = 60_000;
const MIN_RETRY_MS = 100;
const MAX_RETRY_MS = 3_600_000;

const TOP = ['endpoints', 'maxRetryMs'] as const;
const ENDPOINT = ['url', 'secret', 'secretEnv', 'name', 'events', 'batchSize', 'flushMs'] as const;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function shown(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 80 ? `${value.slice(0, 80)}…` : value}'`;
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'a list' : 'an object';
  return String(value);
}

function wholeNumber(value: unknown, field: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${field}: ${shown(value)} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

/** The URL with any user name, password and query left out, for log lines. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

function readUrl(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw new Error(`${field}: required, a URL like https://hooks.example.org/ferry`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${field}: ${shown(value)} is not a URL (like https://hooks.example.org/ferry)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${field}: ${shown(value)} must be an http: or https: URL`);
  if (url.hash !== '') throw new Error(`${field}: ${shown(redactUrl(value))} must not have a #fragment`);
  return url.href;
}

function readSecret(raw: Record<string, unknown>, where: string, env: Readonly<Record<string, string | undefined>>): string {
  const { secret, secretEnv } = raw;
  if (secret !== undefined && secretEnv !== undefined) throw new Error(`${where}: give either secret or secretEnv, not both`);
  if (secret === undefined && secretEnv === undefined) {
    throw new Error(`${where}: missing secret: give secret (a string) or secretEnv (the name of an environment variable that holds it)`);
  }
  if (secret !== undefined) {
    if (typeof secret !== 'string' || secret === '') throw new Error(`${where}.secret: must be a non-empty string`);
    return secret;
  }
  if (typeof secretEnv !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(secretEnv)) {
    throw new Error(`${where}.secretEnv: ${shown(secretEnv)} must be the name of an environment variable`);
  }
  const value = env[secretEnv];
  if (value === undefined || value === '') throw new Error(`${where}.secretEnv: the environment variable ${secretEnv} is not set (or empty)`);
  return value;
}

function readEvents(value: unknown, field: string): ReadonlySet<AuditEventType> | null {
  if (value === undefined) return null;
  if (!Array.isArray(value) || value.length === 0) throw new Error(`${field}: must be a non-empty list of event types (${AUDIT_EVENTS.join(', ')}); leave it out for all`);
  const events = new Set<AuditEventType>();
  for (const e of value) {
    if (typeof e !== 'string' || !(AUDIT_EVENTS as readonly string[]).includes(e)) {
      throw new Error(`${field}: unknown event type ${shown(e)} (known: ${AUDIT_EVENTS.join(', ')})`);
    }
    events.add(e as AuditEventType);
  }
  return events;
}

/**
 * Checks and normalises the plugin's options; every error names the field, e.g.
 * `endpoints[1].events: unknown event type 'uplod' (known: login, ...)`.
 *
 * @example
 * ```ts
 * validate({ endpoints: [{ url: 'https://h.example/ferry', secretEnv: 'HOOK_SECRET', events: ['upload'] }] });
 * ```
 */
export function validate(raw: unknown, env: Readonly<Record<string, string | undefined>> = process.env): WebhookOptions {
  if (!isPlainObject(raw)) throw new Error('options must be a mapping like { endpoints: [{ url, secret }] }');
  for (const key of Object.keys(raw)) {
    if (!(TOP as readonly string[]).includes(key)) throw new Error(`unknown option '${key}' (known: ${TOP.join(', ')})`);
  }
  const list = raw.endpoints;
  if (!Array.isArray(list) || list.length === 0) throw new Error('endpoints: required, a non-empty list of { url, secret | secretEnv, events?, batchSize?, flushMs?, name? }');
  const endpoints = list.map((item: unknown, i): EndpointOptions => {
    const where = `endpoints[${i}]`;
    if (!isPlainObject(item)) throw new Error(`${where}: must be a mapping like { url, secret }`);
    for (const key of Object.keys(item)) {
      if (!(ENDPOINT as readonly string[]).includes(key)) throw new Error(`${where}: unknown option '${key}' (known: ${ENDPOINT.join(', ')})`);
    }
    let name: string | null = null;
    if (item.name !== undefined) {
      if (typeof item.name !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,63}$/i.test(item.name)) {
        throw new Error(`${where}.name: ${shown(item.name)} must be 1 to 64 letters, digits, '.', '_' or '-'`);
      }
      name = item.name;
    }
    return {
      url: readUrl(item.url, `${where}.url`),
      secret: readSecret(item, where, env),
      name,
      events: readEvents(item.events, `${where}.events`),
      batchSize: wholeNumber(item.batchSize, `${where}.batchSize`, 1, MAX_BATCH_SIZE, DEFAULT_BATCH_SIZE),
      flushMs: wholeNumber(item.flushMs, `${where}.flushMs`, 0, MAX_FLUSH_MS, DEFAULT_FLUSH_MS),
    };
  });
  const keys = new Map<string, number>();
  endpoints.forEach((e, i) => {
    const key = e.name ?? e.url;
    const first = keys.get(key);
    if (first !== undefined) {
      throw new Error(`endpoints[${i}]: same ${e.name ? `name '${e.name}'` : `URL ${redactUrl(e.url)}`} as endpoints[${first}]; each endpoint needs its own outbox (give them different names)`);
    }
    keys.set(key, i);
  });
  return { endpoints, maxRetryMs: wholeNumber(raw.maxRetryMs, 'maxRetryMs', MIN_RETRY_MS, MAX_RETRY_MS, DEFAULT_MAX_RETRY_MS) };
}
