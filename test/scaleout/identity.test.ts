// `ferry identity show|rotate --db`: the one TLS identity of the servers sharing a database, made, shown, replaced by
// a new pair or by given files, and what a server presents after a restart (the real CLI, a real PostgreSQL).
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { dbMissing, freshDatabase } from '../db/pg.ts';
import { childEnv, cleanup, runFerry, startServer, tempDir } from '../e2e/harness.ts';
import { testWhen } from '../skip.ts';

const t = suite('ferry identity (shared TLS identity)');

testWhen(t, dbMissing, 'show makes one if needed; a server presents it; rotate replaces it (new, or from files); a bad pair is refused', async () => {
  const db = await freshDatabase();
  const home = tempDir('ferry-home-');
  const work = tempDir('ferry-identity-');
  const env = childEnv(home);
  const ferry = (...args: string[]) => runFerry(args, { env, timeoutMs: 30_000 });
  try {
    const shown = await ferry('identity', 'show', '--db', db.url);
    assert.is(shown.code, 0, shown.stderr);
    const first = /fingerprint (SHA256:\S+) \(made now/.exec(shown.stdout)?.[1];
    assert.ok(first, shown.stdout);
    const again = await ferry('identity', 'show', '--db', db.url);
    assert.is(again.stdout.trim(), `fingerprint ${first}`);

    let server = await startServer({ home, args: ['--db', db.url] });
    assert.is(server.fingerprint, first);
    await server.dispose();

    const rotated = await ferry('identity', 'rotate', '--db', db.url);
    assert.is(rotated.code, 0, rotated.stderr);
    const second = /fingerprint (SHA256:\S+)/.exec(rotated.stdout + rotated.stderr)?.[1];
    assert.ok(second && second !== first, rotated.stdout + rotated.stderr);
    server = await startServer({ home, args: ['--db', db.url] });
    assert.is(server.fingerprint, second, 'a restarted server presents the new one');
    await server.dispose();

    // A pair from elsewhere (here: the identity one server made in its data directory).
    const solo = await startServer({ home, dataDir: join(work, 'solo') });
    const theirs = solo.fingerprint;
    await solo.dispose();
    const key = join(work, 'solo', 'identity', 'key.pem');
    const cert = join(work, 'solo', 'identity', 'cert.pem');
    const imported = await ferry('identity', 'rotate', '--db', db.url, '--key', key, '--cert', cert);
    assert.is(imported.code, 0, imported.stderr);
    assert.match(imported.stdout + imported.stderr, new RegExp(`fingerprint ${theirs.replace(/[+/]/g, '\\$&')}`));
    assert.is((await ferry('identity', 'show', '--db', db.url)).stdout.trim(), `fingerprint ${theirs}`);

    const other = join(work, 'other.pem');
    writeFileSync(other, readFileSync(key, 'utf8').replace(/A/, 'B'));
    const bad = await ferry('identity', 'rotate', '--db', db.url, '--key', other, '--cert', cert);
    assert.is(bad.code, 1);
    assert.is(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.match(bad.stderr, /^ferry: Cannot use this TLS identity: /);
    assert.is((await ferry('identity', 'show', '--db', db.url)).stdout.trim(), `fingerprint ${theirs}`, 'unchanged by a refused pair');
  } finally {
    cleanup(home, work);
    await db.drop();
  }
});

t.run();
