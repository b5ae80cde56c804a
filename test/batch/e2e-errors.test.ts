import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, exited, startFerry, startServer, tempDir, waitUntil, type ServerHandle } from '../e2e/harness.ts';
import { addUser, batch, exitedWithin, hashTree, homeOf, lines, makeTree, manifest, serverLines, startBatch } from './e2e-helpers.ts';

const PASS = 'bob-password-1';
const t = suite('ferry batch: mistakes, refusals and interruptions');
let server: ServerHandle;
let work: string;

t.before(async () => {
  server = await startServer();
  work = tempDir('ferry-batch-err-');
  await addUser(server, 'bob', PASS);
  mkdirSync(join(work, 'src'), { recursive: true });
  writeFileSync(join(work, 'src', 'a.txt'), 'alpha');
  writeFileSync(join(work, 'src', 'b.txt'), 'beta');
});

t.after(async () => {
  await server.dispose();
  cleanup(work);
});

t('a manifest with three mistakes reports all three with their lines, exits 2 and transfers nothing', async () => {
  const text = [
    `server: 127.0.0.1:${server.port}`,
    `fingerprint: ${server.fingerprint}`,
    'user: bob',
    'password: ${FERRY_BATCH_TEST_UNSET}', // 4: an environment variable that is not set
    'ops:',
    '  - put: ./src',
    '    to: inbox/',
    '    overwrite: always', // 8: not skip, replace or fail
    '  - get: inbox/a.txt',
    '    destination: ./x', // 10: unknown field
  ].join('\n');
  writeFileSync(join(work, 'bad.yaml'), text);
  const connectionsBefore = serverLines(server, /Connected/).length;
  const r = await batch(server, ['bad.yaml'], { cwd: work, password: PASS });
  assert.is(r.code, 2, r.stderr);
  const reported = r.stderr.split('\n').filter((l) => /^bad\.yaml:\d+:\d+: /.test(l));
  assert.equal(
    reported.map((l) => l.split(': ')[0]?.replace(/:\d+$/, '') + ' ' + l.split(': ')[1]),
    ['bad.yaml:4 password', 'bad.yaml:8 ops[0].overwrite', 'bad.yaml:10 ops[1].destination'],
  );
  assert.match(r.stderr, /FERRY_BATCH_TEST_UNSET is not set/);
  assert.match(r.stderr, /3 problems in bad\.yaml; nothing was transferred/);
  assert.is(r.stdout, '');
  // Nothing reached the server: no connection, an empty home.
  assert.is(serverLines(server, /Connected/).length, connectionsBefore);
  const home = homeOf(server, 'bob');
  assert.ok(!existsSync(home) || readdirSync(home).length === 0);
  assert.not.ok(existsSync(join(work, 'bad.yaml.journal')));
});

t('an unknown server without a fingerprint, whose certificate no CA verifies, is refused before anything is sent: only its certificate is looked at (never a prompt, never a log-in)', async () => {
  const text = `server: 127.0.0.1:${server.port}\nuser: bob\npassword: \${FERRY_PASSWORD}\nops:\n  - mkdir: x\n`;
  writeFileSync(join(work, 'nofp.yaml'), text);
  const before = server.output().length;
  const r = await batch(server, ['nofp.yaml'], { cwd: work, password: PASS });
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /^nofp\.yaml:1:9: fingerprint: is required: 127\.0\.0\.1:\d+ is not in /m);
  await new Promise((res) => setTimeout(res, 300));
  const seen = server.output().slice(before);
  assert.match(seen, /Connected/, `the certificate was looked at (a TLS connection): ${seen}`);
  assert.not.match(seen, /Handshake done|Authentication/, `nothing of the protocol was sent: ${seen}`);
  assert.not.match(seen, /handshake failed/, `the probe left cleanly: ${seen}`);
});

t('a wrong password is exit 3 and nothing runs', async () => {
  writeFileSync(join(work, 'pw.yaml'), manifest(server, 'bob', `  - put: ./src\n    to: pw/\n`));
  const r = await batch(server, ['pw.yaml', '--json'], { cwd: work, password: 'wrong-password' });
  assert.is(r.code, 3, r.stderr);
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(events.map((e) => e.event), ['start', 'error', 'summary']);
  assert.is(events[1].code, 'auth_failed');
  assert.is(events[2].exitCode, 3);
  assert.not.ok(existsSync(join(homeOf(server, 'bob'), 'pw')));
});

t('a permission error is reported once, never retried; the other operations still run; exit 1', async () => {
  await addUser(server, 'reader', 'reader-password', 'list,download');
  const home = homeOf(server, 'reader');
  mkdirSync(join(home, 'pub'), { recursive: true });
  writeFileSync(join(home, 'pub', 'one.bin'), randomBytes(3000));
  writeFileSync(join(home, 'pub', 'two.bin'), randomBytes(70_000));
  writeFileSync(
    join(work, 'ro.yaml'),
    manifest(server, 'reader', `  - put: ./src/a.txt\n    to: denied.txt\n  - get: pub\n    to: ./ro-out/\n`, 'retries: 5\n'),
  );
  const r = await batch(server, ['ro.yaml', '--json'], { cwd: work, password: 'reader-password' });
  assert.is(r.code, 1, r.stderr);
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const errors = events.filter((e) => e.event === 'error');
  assert.equal(errors.map((e) => [e.op, e.code, e.attempts, e.retried]), [[0, 'permission_denied', 1, false]]);
  assert.is(events.filter((e) => e.event === 'retry').length, 0);
  assert.equal(events.filter((e) => e.event === 'done').map((e) => e.to).sort(), ['ro-out/pub/one.bin', 'ro-out/pub/two.bin']);
  assert.equal(hashTree(join(work, 'ro-out', 'pub')), hashTree(join(home, 'pub')));
  // The server saw exactly one attempt at the upload (a bundle of the one file, refused as a whole).
  await server.waitFor(/DWLD (pub\/two\.bin|2 file\(s\) as one bundle)/);
  assert.is(serverLines(server, /UPLD (denied\.txt|\(a bundle\)): permission_denied/).length, 1);
  assert.not.ok(existsSync(join(home, 'denied.txt')));
});

t('the server dies midway: the batch reconnects, retries what was in flight, and finishes (one request per file)', async () => {
  // A server of its own on a fixed port, so that it can come back on the same address.
  const own = await startServer();
  const port = own.port;
  await addUser(own, 'bob', PASS);
  const dir = join(work, 'reconnect');
  makeTree(join(dir, 'data'), 200, 4096);
  writeFileSync(join(dir, 'r.yaml'), manifest(own, 'bob', `  - put: ./data\n    to: r/\n`, 'concurrency: 2\nretries: 6\n'));
  // One request per file (--no-bundles), each journaled as it ends; bundles: e2e-bundles.test.ts.
  const child = startBatch(own, ['r.yaml', '--no-bundles'], { cwd: dir, password: PASS });
  let again: ReturnType<typeof startFerry> | null = null;
  try {
    await waitUntil(() => lines(join(dir, 'r.yaml.journal')) > 30 || child.exitCode !== null, 30_000, 'some files done');
    assert.is(child.exitCode, null, 'the batch finished before the server could be killed');
    await own.kill();
    again = startFerry(['serve', '--host', '127.0.0.1', '--port', String(port), '--data', own.dataDir], { env: childEnv(own.home) });
    const restarted = again;
    await waitUntil(() => /listening on/.test(restarted.output()), 20_000, 'the server to come back');
    await exitedWithin(child, 30_000, 'the batch after the restart');
    assert.is(child.exitCode, 0, child.output());
    assert.match(child.output(), /^retry ops\[0\] put .*connection_lost|^warning: connection_lost/m);
    assert.match(child.output(), /^done: transferred \d+ files/m);
    assert.equal(hashTree(join(own.dataDir, 'homes', 'bob', 'r', 'data')), hashTree(join(dir, 'data')));
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (again && again.exitCode === null) {
      again.kill('SIGTERM');
      await exited(again);
    }
    await own.dispose();
  }
});

t('Ctrl-C stops quickly with exit 130, the journal stays readable, and a re-run finishes the job (one request per file)', async () => {
  const dir = join(work, 'sigint');
  makeTree(join(dir, 'data'), 200, 4096);
  writeFileSync(join(dir, 's.yaml'), manifest(server, 'bob', `  - put: ./data\n    to: s/\n`, 'concurrency: 2\n'));
  const journal = join(dir, 's.yaml.journal');
  const child = startBatch(server, ['s.yaml', '--no-bundles'], { cwd: dir, password: PASS });
  await waitUntil(() => lines(journal) > 20 || child.exitCode !== null, 30_000, 'some files done');
  assert.is(child.exitCode, null, 'finished before the interrupt');
  const sent = Date.now();
  child.kill('SIGINT');
  await exitedWithin(child, 10_000, 'the interrupted batch');
  assert.is(child.exitCode, 130, child.output());
  assert.ok(Date.now() - sent < 5000, `took ${Date.now() - sent} ms to stop`);
  assert.match(child.output(), /^interrupted: transferred \d+ files.*not run; run the same command again to continue$/m);
  for (const l of readFileSync(journal, 'utf8').trim().split('\n')) JSON.parse(l);
  assert.not.ok(existsSync(`${journal}.lock`));
  const r = await batch(server, ['s.yaml', '--no-bundles'], { cwd: dir, password: PASS });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /skipped: done in an earlier run/);
  assert.equal(hashTree(join(homeOf(server, 'bob'), 's', 'data')), hashTree(join(dir, 'data')));
});

t('--dry-run shows each file, its size and what would be skipped, and transfers nothing', async () => {
  writeFileSync(join(work, 'dry.yaml'), manifest(server, 'bob', `  - put: ./src\n    to: dry/\n    exclude: b.txt\n  - delete: nothing-here\n    missing_ok: true\n`));
  const r = await batch(server, ['dry.yaml', '--dry-run'], { cwd: work, password: PASS });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /ops\[0\] put: 1 file \(5 B\) to transfer, 1 excluded/);
  assert.match(r.stdout, /^ {2}put +src\/a\.txt -> dry\/src\/a\.txt \(5 B\)$/m);
  assert.match(r.stdout, /^ {2}skip +nothing-here: nothing there \(missing_ok\)$/m);
  assert.match(r.stdout, /^dry run: would transfer 1 file, 5 B; 1 skipped, 0 failed; nothing was transferred$/m);
  assert.not.ok(existsSync(join(homeOf(server, 'bob'), 'dry')));
  assert.not.ok(existsSync(join(work, 'dry.yaml.journal')));
});

t.run();
