// Several ferry servers as one, for the tests: two `ferry serve` children sharing one PostgreSQL database (a fresh
// database on the DATABASE_URL server) and one object store (a fresh bucket in the S3_ENDPOINT store), behind a real
// HAProxy (scripts/services/haproxy.sh) with send-proxy-v2. Direct connections to one server go over ::1 (the servers
// listen on every address and only 127.0.0.1, the balancer, must send a PROXY header).
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dbMissing, freshDatabase, type TestDatabase } from '../db/pg.ts';
import { cleanup, ROOT, startServer, tempDir, waitUntil, type ServerHandle } from '../e2e/harness.ts';
import { closeStore, openStore, storeMissing, type TestStore } from '../s3/store.ts';

const HAPROXY = join(ROOT, 'scripts/services/haproxy.sh');

/** Why a cluster cannot run here (no database, no object store, no HAProxy), or null. */
export const clusterMissing = (): string | null =>
  dbMissing() ??
  storeMissing() ??
  (spawnSync('sh', ['-c', 'command -v haproxy'], { stdio: 'ignore' }).status === 0 ? null : 'no haproxy: run `scripts/services/haproxy.sh install` as root');

export interface Cluster {
  db: TestDatabase;
  store: TestStore;
  dir: string;
  servers: ServerHandle[];
  /** HAProxy's directory (its log: haproxy.log) and port. */
  ha: string;
  haPort: number;
  /** The servers' arguments besides the data directory and port. */
  args: string[];
}

/** One more server of the cluster (or one started again: `port` its old one). */
export function startMember(c: Pick<Cluster, 'dir' | 'store' | 'args'>, name: string, home: string, port = 0): Promise<ServerHandle> {
  return startServer({ dataDir: join(c.dir, name), home, host: null, port, args: c.args, env: { ...c.store.env } });
}

/** Two servers (both at once: one migrates and makes the identity, the other waits and loads it), then HAProxy. */
export async function startCluster(options: { prefix: string; config?: string }): Promise<Cluster> {
  const dir = tempDir(`ferry-${options.prefix}-`);
  const db = await freshDatabase();
  const store = await openStore();
  const args = ['--db', db.url, '--storage', `s3://${store.bucket}/${options.prefix}`, '--s3-endpoint', store.endpoint, '--proxy-protocol', '127.0.0.1/32'];
  if (options.config !== undefined) {
    writeFileSync(join(dir, 'ferry.yaml'), options.config);
    args.push('--config', join(dir, 'ferry.yaml'));
  }
  const home = tempDir('ferry-home-');
  const c = { dir, store, args };
  const servers = await Promise.all([startMember(c, 'a', home), startMember(c, 'b', home)]);
  const ha = join(dir, 'ha');
  const started = execFileSync('bash', [HAPROXY, 'start', ha, ...servers.map((s) => String(s.port))], { encoding: 'utf8' });
  const haPort = Number(/HAPROXY_PORT=(\d+)/.exec(started)?.[1]);
  const log = () => readFileSync(join(ha, 'haproxy.log'), 'utf8');
  await waitUntil(() => (log().match(/ is UP/g) ?? []).length >= 2 || !/ is DOWN/.test(log()), 5000, 'HAProxy to see both servers up');
  return { db, store, dir, servers, ha, haPort, args };
}

/** Stops HAProxy and the servers, drops the database and the bucket, removes the files. */
export async function stopCluster(c: Cluster): Promise<void> {
  spawnSync('bash', [HAPROXY, 'stop', c.ha]);
  for (const s of c.servers) await s.dispose();
  await c.db.drop().catch(() => {});
  await closeStore(c.store).catch(() => {});
  cleanup(c.dir);
}
