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
