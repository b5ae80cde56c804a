// The shared state of several servers in a real PostgreSQL (DATABASE_URL; a fresh database for this file): each
// "server" is its own Database (its own pool and server id), so what one does must be seen, exactly, by the other.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FerryError } from '../../src/core/errors.ts';
import {
  Database, DbAuditLog, DbLoginGate, DbNameLeases, DbRateGate, DbTransferSlots, DbUserStore, FERRY_MIGRATIONS, loadOrCreateSharedIdentity, migrate, openDatabase, redactUrl, ServerPresence,
} from '../../src/db/mod.ts';
import { TransferSlots } from '../../src/server/session/transfers.ts';
import { renderEvent } from '../../src/audit/mod.ts';
import { testWhen } from '../skip.ts';
import { dbMissing, freshDatabase, type TestDatabase } from './pg.ts';

const t = suite('shared state in PostgreSQL');
let fresh: TestDatabase | null = null;
const open: Database[] = [];

async function server(): Promise<Database> {
  fresh ??= await freshDatabase();
  const db = await openDatabase(fresh.url);
  open.push(db);
  return db;
}

const when = (name: string, body: () => Promise<void>) => testWhen(t, dbMissing, name, body);

t.after(async () => {
  for (const db of open) await db.close();
  await fresh?.drop();
});

when('migrations: five servers starting at once, one migrates, all see the schema; a newer schema is refused', async () => {
  fresh ??= await freshDatabase();
  const dbs = await Promise.all([1, 2, 3, 4, 5].map(() => Database.connect((fresh as TestDatabase).url)));
  open.push(...dbs);
  const applied = await Promise.all(dbs.map((db) => migrate(db, 'ferry', FERRY_MIGRATIONS)));
  assert.equal(applied.flat().sort(), FERRY_MIGRATIONS.map((m) => m.version), `applied once in all: ${JSON.stringify(applied)}`);
  const [first] = dbs as [Database];
  assert.equal(await migrate(first, 'ferry', FERRY_MIGRATIONS), []);
  await first.query("INSERT INTO ferry_migrations (component, version, name) VALUES ('ferry', 99, 'from the future')");
  try {
    await migrate(first, 'ferry', FERRY_MIGRATIONS);
    assert.unreachable('a newer schema must be refused');
  } catch (err) {
    assert.match((err as Error).message, /version 99, newer than this ferry knows/);
  } finally {
    await first.query("DELETE FROM ferry_migrations WHERE version = 99");
  }
});

when('accounts: ten sign-ups of one name (any case) on two servers at once, exactly one wins', async () => {
  const [a, b] = [new DbUserStore(await server()), new DbUserStore(await server())];
  const results = await Promise.allSettled(
    Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).add(i % 3 === 0 ? 'Racer' : 'racer', `password-${i}`)),
  );
  const won = results.filter((r) => r.status === 'fulfilled');
  assert.is(won.length, 1, JSON.stringify(results.map((r) => r.status)));
  for (const r of results) if (r.status === 'rejected') assert.is((r.reason as FerryError).code, 'user_exists');
  assert.is((await b.get('RACER'))?.name, (won[0] as PromiseFulfilledResult<{ name: string }>).value.name);
  await a.setPerms('racer', ['list', 'download']);
  assert.equal((await b.get('racer'))?.perms, ['list', 'download']);
  await b.setRole('racer', 'admin');
  assert.is((await a.get('racer'))?.role, 'admin');
  await a.remove('RACER');
  assert.is(await b.get('racer'), null);
  try {
    await b.remove('racer');
    assert.unreachable();
  } catch (err) {
    assert.is((err as FerryError).code, 'not_found');
  }
  assert.is(await a.get('bad\0name'), null, 'a NUL is simply not found');
});

when('log-in throttle: failures on server A lock the name on server B; success clears the name, not the address', async () => {
  const options = { userLimit: 3, addressLimit: 5, userLockMs: 60_000, addressLockMs: 60_000, baseDelayMs: 10, maxDelayMs: 40 };
  const a = new DbLoginGate(await server(), options);
  const b = new DbLoginGate(await server(), options);
  assert.equal(await b.check('198.51.100.1', 'victim'), { allowed: true });
  assert.is(await a.fail('198.51.100.1', 'victim'), 0);
  assert.is(await b.fail('198.51.100.2', 'Victim'), 10, 'the second failure (any server, any address) waits');
  assert.equal(await a.check('198.51.100.3', 'victim'), { allowed: true });
  await b.fail('198.51.100.3', 'victim');
  const locked = await a.check('203.0.113.50', 'VICTIM');
  assert.is(locked.allowed, false, 'three failures across two servers lock the name everywhere');
  assert.ok(!locked.allowed && locked.retryAfterMs > 55_000 && locked.retryAfterMs <= 60_000, JSON.stringify(locked));
  // An address that fails five times on any server is locked out for every name.
  for (let i = 0; i < 5; i++) await (i % 2 ? a : b).fail('::ffff:192.0.2.9', `name${i}`);
  assert.is((await a.check('192.0.2.9', 'someone-else')).allowed, false, '::ffff:a.b.c.d and a.b.c.d are one client');
  await b.success('192.0.2.9', 'name1');
  assert.is((await a.check('192.0.2.9', 'someone-else')).allowed, false, 'a success does not clear the address');
  await a.fail('192.0.2.77', 'x\0y'); // a NUL from a client is stored, not an error
  await a.prune();
});

when('sign-up limit: two servers taking from one address at once never pass the limit', async () => {
  const a = new DbRateGate(await server(), 'signup-test', 3, 3600_000);
  const b = new DbRateGate(await server(), 'signup-test', 3, 3600_000);
  const taken = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).take('203.0.113.7')));
  assert.is(taken.filter(Boolean).length, 3, JSON.stringify(taken));
  assert.is(await a.take('203.0.113.8'), true, 'another address has its own count');
});

when('audit: both servers append, each reads all in time order; rendering as from audit.log; CLRLOG archives', async () => {
  const a = new DbAuditLog(await server());
  const b = new DbAuditLog(await server());
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 40; i++) {
    writes.push((i % 2 ? a : b).append({ event: 'upload', user: i % 4 === 0 ? 'ann' : 'bob', address: `10.0.0.${i % 2 ? 1 : 2}:5000`, result: 'ok', path: `f${i}.txt`, bytes: i }));
  }
  await Promise.all(writes);
  const all = await a.read();
  assert.is(all.length, 40);
  const times = all.map((e) => e.time);
  assert.equal(times, [...times].sort(), 'in time order');
  assert.is((await b.read({ user: 'ann' })).length, 10);
  assert.is((await b.read({ limit: 5 })).map((e) => e.path).join(), all.slice(-5).map((e) => e.path).join(), 'the last five, oldest first');
  const odd = { event: 'login_failed' as const, user: 'x\0<y>\u001b[31m', address: '10.0.0.3:1', result: 'error' as const, error: 'auth_failed' };
  await a.append(odd);
  const back = (await b.read({ limit: 1 }))[0];
  assert.is(back?.user, odd.user, 'kept as it came (a NUL too)');
  assert.not.match(renderEvent(back as NonNullable<typeof back>), /\u001b|\0/, 'rendered escaped');
  const archive = await b.clear('root', '10.0.0.9:7');
  assert.match(archive, /^audit-\d{8}T\d{9}Z$/);
  const after = await a.read();
  assert.is(after.length, 1);
  assert.equal({ event: after[0]?.event, user: after[0]?.user, detail: after[0]?.detail }, { event: 'log_clear', user: 'root', detail: archive });
  const db = await server();
  const [row] = await db.query<{ n: number; by: string }>('SELECT count(*)::int AS n, min(a.cleared_by) AS by FROM audit_archived d JOIN audit_archives a ON a.name = d.archive WHERE d.archive = $1', [archive]);
  assert.equal(row, { n: 41, by: 'root' }, 'every cleared event kept in the archive');
});

when('TLS identity: servers starting at once all get the same one', async () => {
  const dbs = [await server(), await server(), await server()];
  const ids = await Promise.all(dbs.map((db) => loadOrCreateSharedIdentity(db)));
  assert.is(new Set(ids.map((i) => i.fingerprint)).size, 1);
  assert.is(ids.filter((i) => i.created).length, 1, 'made by exactly one');
});

when('transfer slots: the per-user limit across two servers, racing; a dead server stops counting', async () => {
  const [dbA, dbB] = [await server(), await server()];
  const [pa, pb] = [await ServerPresence.join(dbA, () => {}), await ServerPresence.join(dbB, () => {})];
  try {
    const a = new TransferSlots(4, new DbTransferSlots(dbA, dbA.serverId));
    const b = new TransferSlots(4, new DbTransferSlots(dbB, dbB.serverId));
    const counter = { transfersInFlight: 0 };
    a.join('carol', counter);
    // Racing on both servers at once, several times (a server that wrote its count out of order once let a fifth in).
    for (const user of ['dave', 'erin', 'fred', 'gina', 'carol']) {
      const tries = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).reserve(user)));
      const ok = tries.filter((r) => r.status === 'fulfilled');
      // Reservations held (not released): at most 4 in all, and 4 taken.
      assert.is(ok.length, 4, `${user}: ${JSON.stringify(tries.map((r) => (r.status === 'rejected' ? (r.reason as FerryError).code : 'ok')))}`);
      for (const r of tries) if (r.status === 'rejected') assert.is((r.reason as FerryError).code, 'busy');
    }
    // Slots given back on A reach B once A publishes its counts, and not before.
    const held = [await a.reserve('hana'), await a.reserve('hana'), await a.reserve('hana'), await b.reserve('hana')];
    held[0]?.();
    held[1]?.();
    assert.is(await b.reserve('hana').then(() => 'ok', (e: FerryError) => e.code), 'busy', 'A has not published yet');
    await a.publish();
    const later = await Promise.allSettled(Array.from({ length: 4 }, () => b.reserve('hana')));
    assert.is(later.filter((r) => r.status === 'fulfilled').length, 2, 'the two A gave back');
    // Reservations, releases and publishes racing on one server: its row is never below what it holds (checked while
    // they race: a row read must be at least the fewest reservations held while it was being read), and the next
    // publish makes it exact.
    const kept: Array<() => void> = [];
    const reading = new Set<{ fewest: number }>();
    const lows: string[] = [];
    const rowOfA = async () =>
      (await dbB.query<{ n: number }>('SELECT in_flight AS n FROM transfer_slots WHERE server_id = $1 AND username = $2', [dbA.serverId, 'ivan']))[0]?.n ?? 0;
    let racing = true;
    const publisher = (async () => {
      while (racing) {
        await Promise.all([a.publish(), a.publish()]);
        await new Promise((resolve) => setImmediate(resolve)); // I/O goes on between rounds
      }
    })();
    await Promise.all(
      Array.from({ length: 3 }, async (_, w) => {
        for (let i = 0; i < 20; i++) {
          const release = await a.reserve('ivan').catch(() => null); // busy at 4
          if (release !== null) kept.push(release);
          if ((i + w) % 3 === 0) {
            kept.splice(Math.floor(kept.length / 2), 1)[0]?.();
            for (const r of reading) r.fewest = Math.min(r.fewest, kept.length);
          }
          const read = { fewest: kept.length };
          reading.add(read);
          const row = await rowOfA();
          reading.delete(read);
          if (row < read.fewest) lows.push(`row ${row}, held ${read.fewest}`);
        }
      }),
    );
    racing = false;
    await publisher;
    assert.equal(lows, [], 'never below what A holds');
    await a.publish();
    assert.is(await rowOfA(), kept.length);
    // Server A dies: its slots stop counting once it is not seen.
    await dbB.query("UPDATE servers SET seen_at = now() - interval '1 hour' WHERE id = $1", [dbA.serverId]);
    const freed = await b.reserve('carol').then(() => 'ok', (e: FerryError) => e.code);
    assert.is(freed, 'ok', 'the dead server holds nothing');
  } finally {
    await pa.leave();
    await pb.leave();
  }
});

when('upload leases: one server per key; given back, taken over from a dead server, a late give frees nothing', async () => {
  const [dbA, dbB] = [await server(), await server()];
  const [pa, pb] = [await ServerPresence.join(dbA, () => {}), await ServerPresence.join(dbB, () => {})];
  try {
    const a = new DbNameLeases(dbA, dbA.serverId);
    const b = new DbNameLeases(dbB, dbB.serverId);
    const both = await Promise.all([a.take('homes/u/x'), b.take('homes/u/x')]);
    assert.is(both.filter((t) => t !== null).length, 1, 'exactly one of two at once');
    const [holder, other] = both[0] !== null ? [a, b] : [b, a];
    const token = (both[0] ?? both[1]) as string;
    assert.is(await other.take('homes/u/x'), null);
    const again = await holder.take('homes/u/x'); // its own lease, its give still on the way
    assert.ok(again !== null && again !== token);
    await holder.give('homes/u/x', token); // the late give of the first claim
    assert.is(await other.take('homes/u/x'), null, 'a late give does not free the later claim');
    await holder.give('homes/u/x', again as string);
    const taken = await other.take('homes/u/x');
    assert.ok(taken !== null, 'free once given back');
    // The holder dies: its lease is free for the others.
    const dead = other === a ? dbA : dbB;
    await dbA.query("UPDATE servers SET seen_at = now() - interval '1 hour' WHERE id = $1", [dead.serverId]);
    assert.ok((await holder.take('homes/u/x')) !== null, 'a dead server holds nothing');
  } finally {
    await pa.leave();
    await pb.leave();
  }
});

when('a database that goes away: queries fail with a retryable `unavailable`; the pool recovers when it is back', async () => {
  const db = await server();
  const killer = await server();
  await db.query('SELECT 1');
  await killer.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
  // The terminated connections are found broken on their next use, then replaced.
  let codes: string[] = [];
  for (let i = 0; i < 3; i++) codes.push(await db.query('SELECT 1').then(() => 'ok', (e: FerryError) => e.code ?? String(e)));
  assert.ok(codes.every((c) => c === 'ok' || c === 'unavailable'), codes.join());
  assert.is(codes[codes.length - 1], 'ok', 'back once the database answers');
  const gone = await Database.connect('postgres://nobody@127.0.0.1:1/none').then(() => null, (e: Error) => e.message);
  assert.match(String(gone), /^Cannot reach the database at postgres:\/\/nobody@127\.0\.0\.1:1\/none: .*ECONNREFUSED/);
  assert.is(redactUrl('postgres://ferry:s3cret@db.example.org:5432/ferry?sslmode=require'), 'postgres://ferry@db.example.org:5432/ferry?sslmode=require');
});

t.run();
