// The shared database failing under a running server, for real: a private PostgreSQL cluster of this test's own
// (scripts/services/postgres.sh, in a temporary directory), stopped while `ferry serve --db` runs and started again.
// Log-ins fail with a retryable `unavailable` meanwhile, the server stays up, and nothing is lost. And a database
// that is not there at start stops `ferry serve` and `ferry user` with one clear line.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, ROOT, runFerry, startServer, tempDir } from '../e2e/harness.ts';
import { testWhen } from '../skip.ts';

const t = suite('the shared database goes away and comes back');
const PG = join(ROOT, 'scripts/services/postgres.sh');
const missing = () => (existsSync('/usr/lib/postgresql/15/bin/initdb') ? null : 'no PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin): run `scripts/services/postgres.sh install` as root');

t('a database that cannot be reached at start: one line, exit 1, for serve and for user', async () => {
  const home = tempDir('ferry-home-');
  const data = tempDir('ferry-data-');
  try {
    for (const args of [
      ['serve', '--port', '0', '--data', data, '--db', 'postgres://ferry@127.0.0.1:1/ferry'],
      ['user', 'list', '--db', 'postgres://ferry:s3cret@127.0.0.1:1/ferry'],
    ]) {
      const r = await runFerry(args, { env: childEnv(home), timeoutMs: 30_000 });
      assert.is(r.code, 1, r.stdout + r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.is(lines.length, 1, r.stderr);
      assert.match(lines[0] as string, /^ferry: Cannot reach the database at postgres:\/\/ferry@127\.0\.0\.1:1\/ferry: .*ECONNREFUSED/);
      assert.not.match(r.stderr, /s3cret/, 'the password is never printed');
    }
    const bad = await runFerry(['serve', '--port', '0', '--data', data, '--db', 'mysql://x@y/z'], { env: childEnv(home), timeoutMs: 30_000 });
    assert.is(bad.code, 1);
    assert.match(bad.stderr, /^ferry: Invalid --db 'mysql:\/\/x@y\/z': use postgres:\/\/USER\[:PASSWORD\]@HOST\[:PORT\]\/DATABASE\n$/);
  } finally {
    cleanup(home, data);
  }
});

testWhen(t, missing, 'the database stops under a running server: log-ins get `unavailable`, the server lives, all is there when it is back', async () => {
  const dir = tempDir('ferry-pg-');
  spawnSync('chmod', ['755', dir]);
  const pgDir = join(dir, 'pg');
  let server: Awaited<ReturnType<typeof startServer>> | null = null;
  try {
    const url = /DATABASE_URL=(\S+)/.exec(execFileSync('bash', [PG, 'start', pgDir], { encoding: 'utf8' }))?.[1] as string;
    assert.ok(url, 'the private cluster started');
    server = await startServer({ args: ['--db', url] });
    const made = await server.connect('steady', 'password-1', ['MKDIR kept'], { signup: true });
    assert.is(made.code, 0, made.stderr);

    execFileSync('bash', [PG, 'stop', pgDir]);
    const during = await server.connect('steady', 'password-1', ['LIST']);
    assert.is.not(during.code, 0);
    assert.match(during.stderr, /cannot reach its database/i, during.stdout + during.stderr);
    assert.not.match(during.stderr, /Wrong user name or password/, 'never reported as a wrong password');
    await server.waitFor(/database postgres:\/\/.* unavailable/);
    assert.is(server.process.exitCode, null, 'the server is still running');

    execFileSync('bash', [PG, 'start', pgDir]);
    let after = await server.connect('steady', 'password-1', ['LIST', 'RDLOG']);
    for (let i = 0; i < 5 && after.code !== 0; i++) {
      await new Promise((r) => setTimeout(r, 500));
      after = await server.connect('steady', 'password-1', ['LIST', 'RDLOG']);
    }
    assert.is(after.code, 0, after.stdout + after.stderr);
    assert.match(after.stdout, /kept/);
    assert.match(after.stdout, /Signed up user 'steady'/);
    assert.match(after.stdout, /Created directory 'kept'/);
    // The failed attempt was not counted as a wrong password: no failure line in the log.
    assert.not.match(after.stdout, /Authentication failed for user: steady/);
  } finally {
    await server?.dispose();
    spawnSync('bash', [PG, 'stop', pgDir]);
    cleanup(dir);
  }
});

t.run();
