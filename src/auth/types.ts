export const PERMISSIONS = ['list', 'download', 'upload', 'overwrite', 'delete', 'rename', 'mkdir'] as const;
export type Permission = (typeof PERMISSIONS)[number];
export type Role = 'admin' | 'user';

/** A stored account. `hash` is an encoded scrypt hash (see password.ts); never sent, never logged. */
export interface UserRecord {
  name: string;
  role: Role;
  perms: Permission[];
  hash: string;
  /** ISO time of creation. */
  created: string;
}

/** What the server knows about a logged-in user (no secrets). */
export interface Account {
  name: string;
  role: Role;
  perms: ReadonlySet<Permission>;
}

/**
 * Where accounts are kept: the data directory's users.json (UserStore, the default) or a shared database
 * (several servers as one). Names are unique ignoring case and looked up ignoring case; `add` of a taken name
 * throws user_exists even when two servers add it at the same moment.
 */
export interface UserDirectory {
  /** Where the users are, for messages (a file, or the database without its password). */
  readonly where: string;
  get(name: string): Promise<UserRecord | null>;
  list(): Promise<UserRecord[]>;
  add(name: string, password: string, options?: { role?: Role; perms?: readonly Permission[] }): Promise<UserRecord>;
  remove(name: string): Promise<void>;
  setPassword(name: string, password: string): Promise<UserRecord>;
  setPerms(name: string, perms: readonly Permission[]): Promise<UserRecord>;
  setRole(name: string, role: Role): Promise<UserRecord>;
}
