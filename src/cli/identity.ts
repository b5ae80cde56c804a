/**
 * `ferry identity show|rotate --db URL [--key FILE --cert FILE]`: the TLS identity that every server sharing the
 * database presents (docs/scale-out.md). `rotate` replaces it — by a new self-signed pair, or by the given key and
 * certificate (a CA's) — and prints the new fingerprint; servers load it when they restart.
 */
import { readFile } from 'node:fs/promises';
import { consola } from 'consola';
import { loadOrCreateSharedIdentity, openDatabase, storeSharedIdentity } from '../db/mod.ts';
import { generateIdentity } from '../tls/mod.ts';

export interface IdentityCommandOptions {
  db?: string;
  key?: string;
  cert?: string;
}

export async function runIdentityCommand(action: string, options: IdentityCommandOptions): Promise<void> {
  if (action !== 'show' && action !== 'rotate') throw new Error(`Unknown identity action '${action}': use show or rotate`);
  const url = options.db ?? (process.env['FERRY_DB'] || undefined);
  if (url === undefined) throw new Error('Missing --db URL (or FERRY_DB): the identity of several servers lives in their database; one server keeps its own in <data>/identity/');
  if ((options.key === undefined) !== (options.cert === undefined)) throw new Error('--key and --cert go together');
  if (action === 'show' && options.key !== undefined) throw new Error('--key and --cert are for rotate');
  const pair = options.key !== undefined ? { key: await _read(options.key, '--key'), cert: await _read(options.cert as string, '--cert') } : null;
  const db = await openDatabase(String(url));
  try {
    if (action === 'show') {
      const id = await loadOrCreateSharedIdentity(db);
      process.stdout.write(`fingerprint ${id.fingerprint}${id.created ? ' (made now: the database had none)' : ''}\n`);
      return;
    }
    const fresh = pair ?? (await generateIdentity());
    const id = await storeSharedIdentity(db, fresh.key, fresh.cert);
    consola.success(`New TLS identity in ${db.where}: fingerprint ${id.fingerprint}`);
    consola.info('Restart the servers one at a time; tell users the new fingerprint through a channel they trust');
  } finally {
    await db.close();
  }
}

async function _read(file: string, flag: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`Cannot read ${flag} '${file}': ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}
