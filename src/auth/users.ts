/**
 * The user store: one JSON file, `{"version":1,"users":[UserRecord...]}`, shared by a running server
 * and the offline `ferry user` commands.
 *
 * - Reads are lock-free: writes replace the file atomically, so a reader sees the old or the new file.
 *   `get` and `list` re-read it when it changed on disk, so a running server sees offline edits.
 * - Every change runs under an in-process mutex and a cross-process lock file (`<file>.lock`), re-reads
 *   the file under the lock, and writes a temp file that is fsynced and renamed over the old one.
 * - A missing file means no users. A file that cannot be parsed is an error naming the file; it is never
 *   replaced by an empty one.
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../fs/atomic.ts';
import { LockFile } from '../fs/lock-file.ts';
import { FerryError } from '../core/errors.ts';
import { hashPassword, validatePassword } from './password.ts';
import { PERMISSIONS, type Account, type Permission, type Role, type UserDirectory, type UserRecord } from './types.ts';

export const USER_FILE_NAME = 'users.json';
export const USER_FILE_VERSION = 1;
export const MAX_USERNAME_LENGTH = 32;
/** A lock file older than this is taken over even if its process still seems alive. */
export const LOCK_STALE_MS = 30_000;
/** How long a change waits for the lock before giving up with `busy`. */
export const LOCK_TIMEOUT_MS = 10_000;

const _USERNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const _ROLES: readonly Role[] = ['admin', 'user'];

export interface UserStoreOptions {
  /** How long a change waits for the lock file (default LOCK_TIMEOUT_MS). */
  lockTimeoutMs?: number;
}

export interface AddUserOptions {
  /** Default 'user'. Nobody becomes admin unless this says so. */
  role?: Role;
  /** Default: every permission. */
  perms?: readonly Permission[];
}

interface _UserFile {
  version: typeof USER_FILE_VERSION;
  users: UserRecord[];
}

/**
 * Throws `FerryError('invalid_username')` unless the name is 1-32 letters, digits, `_`, `.` or `-`,
 * not starting with `.` or `-`.
 *
 * @example
 * validateUsername('alice.b'); // ok
 * validateUsername('../x');    // throws invalid_username
 */
export function validateUsername(name: string): void {
  if (
    typeof name !== 'string' ||
    name.length < 1 ||
    name.length > MAX_USERNAME_LENGTH ||
    name === '.' ||
    name === '..' ||
    !_USERNAME.test(name)
  ) {
    throw new FerryError(
      'invalid_username',
      `User name must be 1-${MAX_USERNAME_LENGTH} letters, digits, _ . - and must not start with . or -`,
    );
  }
}

/**
 * Checks a list of permissions and returns it without duplicates, in PERMISSIONS order. Throws an Error
 * naming the first unknown one.
 *
 * @example
 * normalizePermissions(['upload', 'list', 'list']); // ['list', 'upload']
 */
export function normalizePermissions(perms: readonly string[]): Permission[] {
  for (const perm of perms) {
    if (!(PERMISSIONS as readonly string[]).includes(perm)) {
      throw new Error(`Unknown permission '${perm}': use ${PERMISSIONS.join(', ')}`);
    }
  }
  return PERMISSIONS.filter((perm) => perms.includes(perm));
}

/** Where a data directory keeps its users: `<dataDir>/users.json`. */
export function userFileIn(dataDir: string): string {
  return join(dataDir, USER_FILE_NAME);
}

/** The secret-free view of a record that the server keeps for a logged-in connection. */
export function toAccount(record: UserRecord): Account {
  return { name: record.name, role: record.role, perms: new Set(record.perms) };
}

/**
 * Users in a JSON file. Names are unique ignoring case, and looked up ignoring case: the record's
 * `name` is the spelling given when the user was added.
 *
 * @example
 * const users = new UserStore('/var/lib/ferry/users.json');
 * await users.add('alice', 'correct horse', { perms: ['list', 'download'] });
 * const alice = await users.get('ALICE'); // { name: 'alice', role: 'user', ... }
 */
export class UserStore implements UserDirectory {
  readonly file: string;
  readonly #lockFile: string;
  readonly #lockTimeoutMs: number;
  #cache: { key: string; users: UserRecord[] } | null = null;

  constructor(file: string, options: UserStoreOptions = {}) {
    this.file = resolve(file);
    this.#lockFile = `${this.file}.lock`;
    this.#lockTimeoutMs = options.lockTimeoutMs ?? LOCK_TIMEOUT_MS;
  }

  get where(): string {
    return this.file;
  }

  /** The user with this name (any case), or null. */
  async get(name: string): Promise<UserRecord | null> {
    const users = await this.#current();
    const found = _find(users, name);
    return found ? _copy(found) : null;
  }

  /** Every user, in the order they were added. */
  async list(): Promise<UserRecord[]> {
    return (await this.#current()).map(_copy);
  }

  /** Adds a user. Throws invalid_username, weak_password, or user_exists (names compare ignoring case). */
  async add(name: string, password: string, options: AddUserOptions = {}): Promise<UserRecord> {
    validateUsername(name);
    validatePassword(password);
    const role = _checkRole(options.role ?? 'user');
    const perms = options.perms === undefined ? [...PERMISSIONS] : normalizePermissions(options.perms);
    // Fail fast before the slow hash; the check that counts is the one under the lock.
    if (_find(await this.#current(), name)) throw _exists(name);
    const hash = await hashPassword(password);
    return this.#mutate((users) => {
      if (_find(users, name)) throw _exists(name);
      const record: UserRecord = { name, role, perms, hash, created: new Date().toISOString() };
      users.push(record);
      return _copy(record);
    });
  }

  /** Removes a user. Throws not_found. */
  async remove(name: string): Promise<void> {
    await this.#mutate((users) => {
      const index = users.findIndex((user) => _same(user.name, name));
      if (index < 0) throw _notFound(name);
      users.splice(index, 1);
    });
  }

  /** Replaces a user's password. Throws weak_password or not_found. */
  async setPassword(name: string, password: string): Promise<UserRecord> {
    validatePassword(password);
    if (!_find(await this.#current(), name)) throw _notFound(name);
    const hash = await hashPassword(password);
    return this.#update(name, (user) => (user.hash = hash));
  }

  /** Replaces a user's permissions. Throws not_found, or an Error for an unknown permission. */
  async setPerms(name: string, perms: readonly Permission[]): Promise<UserRecord> {
    const normalized = normalizePermissions(perms);
    return this.#update(name, (user) => (user.perms = normalized));
  }

  /** Makes a user an admin or a regular user. Throws not_found. */
  async setRole(name: string, role: Role): Promise<UserRecord> {
    _checkRole(role);
    return this.#update(name, (user) => (user.role = role));
  }

  #update(name: string, change: (user: UserRecord) => void): Promise<UserRecord> {
    return this.#mutate((users) => {
      const user = _find(users, name);
      if (!user) throw _notFound(name);
      change(user);
      return _copy(user);
    });
  }

  /** The users on disk now, from the cache when the file has not changed since it was read. */
  async #current(): Promise<UserRecord[]> {
    const key = await this.#fileKey();
    if (this.#cache && this.#cache.key === key) return this.#cache.users;
    const users = await this.#read();
    // The file may have been replaced between stat and read: then the next call reads it again.
    this.#cache = { key, users };
    return users;
  }

  async #fileKey(): Promise<string> {
    try {
      const info = await stat(this.file);
      // A rename gives a new inode, so the key changes even if mtime and size do not.
      return `${info.ino}:${info.size}:${info.mtimeMs}:${info.ctimeMs}`;
    } catch (error) {
      if (_code(error) === 'ENOENT') return 'missing';
      throw new Error(`Cannot read user file '${this.file}': ${_reason(error)}`);
    }
  }

  async #read(): Promise<UserRecord[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if (_code(error) === 'ENOENT') return [];
      throw new Error(`Cannot read user file '${this.file}': ${_reason(error)}`);
    }
    return _parseUserFile(text, this.file).users;
  }

  async #mutate<T>(change: (users: UserRecord[]) => T): Promise<T> {
    return _mutexFor(this.file).run(async () => {
      const release = await this.#lock();
      try {
        const users = await this.#read();
        const result = change(users);
        await this.#write({ version: USER_FILE_VERSION, users });
        this.#cache = null;
        return result;
      } finally {
        await release();
      }
    });
  }

  async #write(content: _UserFile): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify(content, null, 2) + '\n');
  }

  /** Takes the cross-process lock file (fs/lock-file.ts), waiting up to the lock timeout; returns its release. */
  async #lock(): Promise<() => Promise<void>> {
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const lock = new LockFile(this.#lockFile, { staleMs: LOCK_STALE_MS });
    if (!(await lock.acquire(this.#lockTimeoutMs))) {
      throw new FerryError('busy', `Cannot change user file '${this.file}': another process holds ${this.#lockFile}`);
    }
    return async () => lock.release();
  }
}

// --- file format ---------------------------------------------------------------------------------

function _parseUserFile(text: string, file: string): _UserFile {
  const fail = (why: string): never => {
    throw new Error(`Cannot read user file '${file}': ${why}; fix or restore it (ferry will not overwrite it)`);
  };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return fail(`it is not valid JSON (${_reason(error)})`);
  }
  if (!_isObject(data)) return fail('it is not a JSON object');
  if (data['version'] !== USER_FILE_VERSION) return fail(`unsupported version ${JSON.stringify(data['version'])}`);
  const users = data['users'];
  if (!Array.isArray(users)) return fail('"users" is not an array');
  const seen = new Set<string>();
  const records = users.map((user, index): UserRecord => {
    if (
      !_isObject(user) ||
      typeof user['name'] !== 'string' ||
      typeof user['hash'] !== 'string' ||
      typeof user['created'] !== 'string' ||
      !_ROLES.includes(user['role'] as Role) ||
      !Array.isArray(user['perms']) ||
      !user['perms'].every((perm) => (PERMISSIONS as readonly unknown[]).includes(perm))
    ) {
      return fail(`user #${index + 1} is malformed`);
    }
    const key = user['name'].toLowerCase();
    if (seen.has(key)) return fail(`user '${user['name']}' appears twice`);
    seen.add(key);
    return {
      name: user['name'],
      role: user['role'] as Role,
      perms: user['perms'] as Permission[],
      hash: user['hash'],
      created: user['created'],
    };
  });
  return { version: USER_FILE_VERSION, users: records };
}

function _find(users: readonly UserRecord[], name: string): UserRecord | undefined {
  return users.find((user) => _same(user.name, name));
}

function _same(a: string, b: string): boolean {
  return typeof b === 'string' && a.toLowerCase() === b.toLowerCase();
}

function _copy(user: UserRecord): UserRecord {
  return { ...user, perms: [...user.perms] };
}

function _checkRole(role: Role): Role {
  if (!_ROLES.includes(role)) throw new Error(`Unknown role '${String(role)}': use admin or user`);
  return role;
}

function _exists(name: string): FerryError {
  return new FerryError('user_exists', `User name '${name}' is taken`);
}

function _notFound(name: string): FerryError {
  return new FerryError('not_found', `No user named '${name}'`);
}

// --- locking -------------------------------------------------------------------------------------

class _Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task, task);
    this.#tail = result.catch(() => {});
    return result;
  }
}

/** One mutex per file, so two stores on the same file in one process queue instead of polling. */
const _mutexes = new Map<string, _Mutex>();

function _mutexFor(file: string): _Mutex {
  let mutex = _mutexes.get(file);
  if (!mutex) _mutexes.set(file, (mutex = new _Mutex()));
  return mutex;
}

// --- small helpers -------------------------------------------------------------------------------

function _isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function _code(error: unknown): string | undefined {
  return _isObject(error) && typeof error['code'] === 'string' ? error['code'] : undefined;
}

function _reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

