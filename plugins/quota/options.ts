import { parseSize } from '../../src/plugin/mod.ts';

/** One set of limits. A field left out means "no limit" (or, for a user, "as in defaults"). */
export interface Limits {
  maxBytes?: number;
  maxFiles?: number;
}

/** A user's override: a number sets the limit, `null` lifts the default for that user. */
export interface UserLimits {
  maxBytes?: number | null;
  maxFiles?: number | null;
}

export interface QuotaOptions {
  defaults: Limits;
  users: Readonly<Record<string, UserLimits>>;
}

const TOP = ['defaults', 'users'] as const;
const FIELDS = ['maxBytes', 'maxFiles'] as const;

function shown(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 60 ? `${value.slice(0, 60)}…` : value}'`;
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'a list' : 'an object';
  return String(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads one `{ maxBytes, maxFiles }` mapping; `nullable` allows `null` / `'unlimited'` (user overrides). */
function readLimits(raw: unknown, where: string, nullable: boolean): UserLimits {
  if (raw === null || raw === undefined) return {};
  if (!isPlainObject(raw)) throw new Error(`quota: ${where}: must be a mapping like { maxBytes: '10 GiB', maxFiles: 10000 }`);
  const limits: UserLimits = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!(FIELDS as readonly string[]).includes(key)) throw new Error(`quota: ${where}: unknown option '${key}' (known: ${FIELDS.join(', ')})`);
    const field = `${where}.${key}`;
    if (value === null || value === 'unlimited') {
      if (!nullable) throw new Error(`quota: ${field}: leave it out for no limit (null and 'unlimited' are for lifting a default per user)`);
      limits[key as (typeof FIELDS)[number]] = null;
      continue;
    }
    if (key === 'maxBytes') {
      const bytes = parseSize(value);
      if (bytes === null) throw new Error(`quota: ${field}: ${shown(value)} is not a size (e.g. 1048576, '10 MiB', '1.5GB')`);
      limits.maxBytes = bytes;
    } else {
      const files = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
      if (typeof files !== 'number' || !Number.isSafeInteger(files) || files < 0) {
        throw new Error(`quota: ${field}: ${shown(value)} is not a whole number of files`);
      }
      limits.maxFiles = files;
    }
  }
  return limits;
}

/**
 * Checks and normalises the quota plugin's options:
 * `{ defaults: { maxBytes?, maxFiles? }, users: { NAME: { maxBytes?, maxFiles? } } }`. Sizes are bytes or
 * strings like `'10 MiB'`; a user's `null` (or `'unlimited'`) lifts that default for them. Throws an Error
 * naming the field, e.g. "quota: users.alice.maxBytes: '10 MB?' is not a size".
 *
 * @example
 * ```ts
 * validate({ defaults: { maxBytes: '1 GiB' }, users: { alice: { maxBytes: '10 GiB' } } });
 * // { defaults: { maxBytes: 1073741824 }, users: { alice: { maxBytes: 10737418240 } } }
 * ```
 */
export function validate(raw: unknown): QuotaOptions {
  if (raw === null || raw === undefined) return { defaults: {}, users: {} };
  if (!isPlainObject(raw)) throw new Error("quota: options must be a mapping like { defaults: { maxBytes: '1 GiB' }, users: { alice: { maxFiles: 100 } } }");
  for (const key of Object.keys(raw)) {
    if (!(TOP as readonly string[]).includes(key)) throw new Error(`quota: unknown option '${key}' (known: ${TOP.join(', ')})`);
  }
  const defaults = readLimits(raw.defaults, 'defaults', false) as Limits;
  const users: Record<string, UserLimits> = Object.create(null) as Record<string, UserLimits>;
  if (raw.users !== undefined && raw.users !== null) {
    if (!isPlainObject(raw.users)) throw new Error('quota: users: must be a mapping of user names to { maxBytes, maxFiles }');
    for (const [name, value] of Object.entries(raw.users)) users[name] = readLimits(value, `users.${name}`, true);
  }
  return { defaults, users };
}

/** The limits that apply to `user`: their own fields where given, the defaults otherwise. */
export function limitsFor(options: QuotaOptions, user: string): Limits {
  const own = Object.hasOwn(options.users, user) ? options.users[user] : undefined;
  const limits: Limits = {};
  for (const field of FIELDS) {
    const value = own && Object.hasOwn(own, field) ? own[field] : options.defaults[field];
    if (typeof value === 'number') limits[field] = value;
  }
  return limits;
}

/** Whether any user can be limited at all (else the plugin has nothing to do). */
export function limitsAnyone(options: QuotaOptions): boolean {
  return (
    options.defaults.maxBytes !== undefined ||
    options.defaults.maxFiles !== undefined ||
    Object.values(options.users).some((u) => typeof u.maxBytes === 'number' || typeof u.maxFiles === 'number')
  );
}
