/**
 * The one TLS identity of several servers: kept in the shared database (table server_identity, readable by the
 * database role the servers use and by nobody else the administrator has not granted), made by the first server
 * that starts and loaded by every other, so every server presents the same certificate and clients pin one
 * fingerprint behind the balancer. docs/scale-out.md says how to rotate it.
 */
import { generateIdentity, identityOf, type TlsIdentity } from '../tls/mod.ts';
import type { Database } from './pool.ts';

/**
 * The shared identity, made now if the database has none (two servers making one at the same moment: the first
 * insert wins, the other loads it).
 */
export async function loadOrCreateSharedIdentity(db: Database): Promise<TlsIdentity> {
  const existing = await _load(db);
  if (existing) return { ...existing, created: false };
  const fresh = await generateIdentity();
  const inserted = await db.query(
    'INSERT INTO server_identity (id, key_pem, cert_pem, fingerprint) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING id',
    [fresh.key, fresh.cert, fresh.fingerprint],
  );
  if (inserted.length > 0) return { ...fresh, created: true };
  const theirs = await _load(db);
  if (!theirs) throw new Error(`Cannot load the TLS identity from the database at ${db.where}: it vanished while being made`);
  return { ...theirs, created: false };
}

/**
 * Puts `key` and `cert` (PEM) in the database as the shared identity, replacing the one there (rotation, or a
 * certificate from a CA). Servers pick it up when they restart.
 */
export async function storeSharedIdentity(db: Database, key: string, cert: string): Promise<TlsIdentity> {
  const id = identityOf(key, cert, 'Cannot use this TLS identity');
  await db.query(
    `INSERT INTO server_identity (id, key_pem, cert_pem, fingerprint) VALUES (1, $1, $2, $3)
     ON CONFLICT (id) DO UPDATE SET key_pem = $1, cert_pem = $2, fingerprint = $3, created_at = now()`,
    [id.key, id.cert, id.fingerprint],
  );
  return { ...id, created: true };
}

async function _load(db: Database): Promise<Omit<TlsIdentity, 'created'> | null> {
  const [row] = await db.query<{ key_pem: string; cert_pem: string }>('SELECT key_pem, cert_pem FROM server_identity WHERE id = 1');
  if (!row) return null;
  return identityOf(row.key_pem, row.cert_pem, `Cannot load the TLS identity from the database at ${db.where}`);
}
