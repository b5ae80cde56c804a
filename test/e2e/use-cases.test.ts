import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, runFerry, seedFile, sha256File, startServer, tempDir, type ServerHandle } from './harness.ts';

const uc = suite('original use cases over TLS');
let server: ServerHandle;
let work: string;

uc.before(async () => {
  server = await startServer();
  work = tempDir();
  writeFileSync(join(work, 'text.txt'), 'hisham here');
});

uc.after(async () => {
  await server.dispose();
  cleanup(work);
});

uc('the server banner shows the address, data dir and fingerprint', () => {
  assert.match(server.output(), /listening on 127\.0\.0\.1:\d+ \(TLS 1\.3\)/);
  assert.match(server.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.ok(existsSync(join(server.dataDir, 'identity', 'key.pem')));
});

uc('sign-up, upload, list, download, delete and read log work with the original words', async () => {
  const r = await server.connect('Trex_007', 'admin123', ['upld text.txt', 'LIST', 'DWLD text.txt back.txt', 'RDLOG', 'DELF text.txt', 'list', 'QUIT'], {
    signup: true,
    cwd: work,
  });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /Authentication successful/);
  assert.match(r.stdout, /Sent file: text\.txt\nTime elapsed: [\d.]+s\nFile size: 11 B \(11 bytes\)/);
  assert.match(r.stdout, /sha256 verified: [0-9a-f]{64}/);
  assert.match(r.stdout, /text\.txt\s+11 B \(11\)/);
  assert.match(r.stdout, /Total directory size: 11 bytes/);
  assert.is(readFileSync(join(work, 'back.txt'), 'utf8'), 'hisham here');
  assert.match(r.stdout, /- UPLOAD: Uploaded file 'text\.txt' by 'Trex_007'/);
  assert.match(r.stdout, /- DOWNLOAD: Downloaded file 'text\.txt' by 'Trex_007'/);
  assert.match(r.stdout, /Deleted 'text\.txt'/);
  assert.match(r.stdout, /Total directory size: 0 bytes \(0 B\) in 0 entries/);
  // The server lists only the user's home, never its own files.
  assert.not.match(r.stdout, /users\.json|audit\.log|identity/);
  assert.match(server.output(), /Signed up user: Trex_007/);
});

uc('log-in with the right password works; a wrong one fails with one clear line and is logged', async () => {
  const bad = await server.connect('Trex_007', 'wrong-password', ['LIST']);
  assert.is(bad.code, 1);
  assert.is(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  assert.match(bad.stderr, /^ferry: Wrong user name or password/);
  await server.waitFor(/Authentication failed for user: Trex_007/);
  const good = await server.connect('Trex_007', 'admin123', ['LIST']);
  assert.is(good.code, 0, good.stderr);
  const audit = readFileSync(join(server.dataDir, 'audit.log'), 'utf8');
  const failed = audit.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.event === 'login_failed');
  assert.ok(failed, audit);
  assert.is(failed.user, 'Trex_007');
  assert.match(failed.address, /^127\.0\.0\.1:\d+$/);
  assert.is(failed.result, 'error');
  assert.not.match(audit, /wrong-password|admin123/);
  assert.not.match(readFileSync(join(server.dataDir, 'users.json'), 'utf8'), /admin123/);
});

uc('uploads into a subdirectory create its parents; -r moves whole directories both ways', async () => {
  const tree = join(work, 'tree');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(tree, 'a', 'b'), { recursive: true });
  writeFileSync(join(tree, 'top.txt'), 'top');
  writeFileSync(join(tree, 'a', 'b', 'deep.bin'), Buffer.alloc(70_000, 7));
  const r = await server.connect('Trex_007', 'admin123', ['UPLD text.txt docs/2026/', 'UPLD -r tree backup/', 'LIST backup/tree/a/b', 'DWLD -r backup/tree restored'], { cwd: work });
  assert.is(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /Sent file: docs\/2026\/text\.txt/);
  assert.match(r.stdout, /deep\.bin\s+68\.4 KiB \(70000\)/);
  assert.is(readFileSync(join(work, 'restored', 'top.txt'), 'utf8'), 'top');
  assert.is(sha256File(join(work, 'restored', 'a', 'b', 'deep.bin')), sha256File(join(tree, 'a', 'b', 'deep.bin')));
});

uc('MKDIR, RENAME and STAT work, and errors name the problem', async () => {
  const r = await server.connect('Trex_007', 'admin123', ['MKDIR inbox/2026', 'UPLD text.txt inbox/2026/a.txt', 'RENAME inbox/2026/a.txt inbox/b.txt', 'STAT inbox/b.txt', 'STAT inbox/b.txt --sha256'], { cwd: work });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /inbox\/b\.txt {2}file {2}11 B \(11 bytes\)/);
  assert.ok(r.stdout.includes(`sha256 ${sha256File(join(work, 'text.txt'))}`), r.stdout);
  const missing = await server.connect('Trex_007', 'admin123', ['STAT nope.txt', 'LIST'], { cwd: work });
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /line 1 \(STAT\): No such file or directory: 'nope\.txt'/);
  assert.not.match(missing.stdout, /Requesting files/, 'stops at the first failure');
});

uc('paths that try to leave the home are refused and nothing is written outside', async () => {
  for (const target of ['../../escape.txt', '/etc/escape.txt', 'a\\..\\..\\escape.txt', '../users.json']) {
    const r = await server.connect('Trex_007', 'admin123', [`UPLD text.txt '${target}'`], { cwd: work });
    assert.is(r.code, 1, `${target}: ${r.stdout}`);
    assert.match(r.stderr, /path|home|allowed/i, r.stderr);
  }
  const down = await server.connect('Trex_007', 'admin123', ['DWLD ../../users.json stolen.json'], { cwd: work });
  assert.is(down.code, 1);
  assert.not.ok(existsSync(join(work, 'stolen.json')));
  assert.not.ok(existsSync(join(server.dataDir, 'escape.txt')));
  assert.not.ok(existsSync(join(server.dataDir, 'homes', 'escape.txt')));
});

uc('a regular user cannot clear the log and sees only their own events; an admin sees all and clears', async () => {
  const other = await server.connect('mallory', 'password1', ['UPLD text.txt', 'RDLOG', 'CLRLOG'], { signup: true, cwd: work });
  assert.is(other.code, 1);
  assert.match(other.stderr, /Only an admin may clear the log/);
  assert.not.match(other.stdout, /Trex_007/);
  assert.match(other.stdout, /Uploaded file 'text\.txt' by 'mallory'/);

  const add = await runFerry(['user', 'add', 'root', '--admin', '--data', server.dataDir], { env: childEnv(server.home, { FERRY_PASSWORD: 'rootpass1' }) });
  assert.is(add.code, 0, add.stderr);
  const admin = await server.connect('root', 'rootpass1', ['RDLOG', 'CLRLOG', 'RDLOG --json']);
  assert.is(admin.code, 0, admin.stderr);
  assert.match(admin.stdout, /by 'mallory'/);
  assert.match(admin.stdout, /by 'Trex_007'/);
  const archive = /Log cleared \(archived as (\S+)\)/.exec(admin.stdout)?.[1];
  assert.ok(archive, admin.stdout);
  const json = admin.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  assert.is(json[0].event, 'log_clear');
  assert.is(json[0].user, 'root');
  assert.ok(existsSync(join(server.dataDir, 'audit-archive', archive as string)), 'old log archived, not deleted');
});

uc('sign-up cannot make an admin, and closed sign-up refuses new accounts', async () => {
  const users = JSON.parse(readFileSync(join(server.dataDir, 'users.json'), 'utf8'));
  const roles = Object.fromEntries(users.users.map((u: { name: string; role: string }) => [u.name, u.role]));
  assert.equal(roles, { Trex_007: 'user', mallory: 'user', root: 'admin' });
  const closed = await startServer({ args: ['--signup', 'closed'] });
  try {
    const r = await closed.connect('newbie', 'password1', ['LIST'], { signup: true });
    assert.is(r.code, 1);
    assert.match(r.stderr, /Sign-up is closed/);
  } finally {
    await closed.dispose();
  }
});

uc('a read-only account can list and download but not upload, delete or rename', async () => {
  const add = await runFerry(['user', 'add', 'reader', '--perms', 'list,download', '--data', server.dataDir], { env: childEnv(server.home, { FERRY_PASSWORD: 'readonly1' }) });
  assert.is(add.code, 0, add.stderr);
  await seedFile(server, 'reader', 'handbook.txt', 'read me');
  const ok = await server.connect('reader', 'readonly1', ['LIST', 'DWLD handbook.txt reader-copy.txt'], { cwd: work });
  assert.is(ok.code, 0, ok.stderr);
  assert.is(readFileSync(join(work, 'reader-copy.txt'), 'utf8'), 'read me');
  for (const cmd of ['UPLD text.txt', 'DELF handbook.txt', 'RENAME handbook.txt x.txt', 'MKDIR d']) {
    const r = await server.connect('reader', 'readonly1', [cmd], { cwd: work });
    assert.is(r.code, 1, cmd);
    assert.match(r.stderr, /Your account may not/, cmd);
  }
  const still = await server.connect('reader', 'readonly1', ['LIST'], { cwd: work });
  assert.match(still.stdout, /handbook\.txt/, 'the file is still there');
});

uc('repeated wrong passwords lock the account for a while, and the lock-out is logged', async () => {
  const made = await server.connect('locky', 'password1', ['LIST'], { signup: true });
  assert.is(made.code, 0, made.stderr);
  const results = [];
  for (let i = 0; i < 6; i++) results.push(await server.connect('locky', `wrong-${i}-pass`, ['LIST']));
  assert.ok(results.slice(0, 5).every((r) => /Wrong user name or password/.test(r.stderr)), results.map((r) => r.stderr).join('|'));
  assert.match(results[5]!.stderr, /Too many failed log-ins; try again in \d+ s/);
  // Even the right password is refused during the lock-out.
  const locked = await server.connect('locky', 'password1', ['LIST']);
  assert.is(locked.code, 1);
  assert.match(locked.stderr, /Too many failed log-ins/);
  assert.match(server.output(), /Authentication failed for user: locky \(locked out for \d+ s\)/);
});

uc.run();

const trust = suite('server identity (trust on first use)');

trust('an unknown server is refused when not in a terminal, naming the fingerprint and --fingerprint', async () => {
  const server = await startServer();
  try {
    const r = await runFerry(['connect', `127.0.0.1:${server.port}`, '--user', 'x'], { env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }), input: 'LIST\n' });
    assert.is(r.code, 1);
    assert.ok(r.stderr.includes(server.fingerprint), r.stderr);
    assert.match(r.stderr, /--fingerprint/);
    assert.not.match(server.output(), /Handshake done/, 'nothing was sent before the identity check');
  } finally {
    await server.dispose();
  }
});

trust('a pinned fingerprint is remembered; a changed fingerprint is refused loudly', async () => {
  const server = await startServer();
  try {
    const first = await server.connect('pin_user', 'password1', ['LIST'], { signup: true });
    assert.is(first.code, 0, first.stderr);
    const known = readFileSync(join(server.home, 'known_hosts'), 'utf8');
    assert.ok(known.includes(`127.0.0.1:${server.port} ${server.fingerprint}`), known);
    // Without --fingerprint, the remembered one is used.
    const again = await runFerry(['connect', `127.0.0.1:${server.port}`, '--user', 'pin_user'], { env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }), input: 'LIST\n' });
    assert.is(again.code, 0, again.stderr);
    // Now pretend the server's identity changed.
    const fake = 'SHA256:' + 'A'.repeat(43);
    writeFileSync(join(server.home, 'known_hosts'), `127.0.0.1:${server.port} ${fake}\n`);
    const changed = await runFerry(['connect', `127.0.0.1:${server.port}`, '--user', 'pin_user'], { env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }), input: 'LIST\n' });
    assert.is(changed.code, 1);
    assert.match(changed.stderr, /HAS CHANGED/);
    assert.ok(changed.stderr.includes(fake) && changed.stderr.includes(server.fingerprint));
    const wrongPin = await runFerry(['connect', `127.0.0.1:${server.port}`, '--user', 'pin_user', '--fingerprint', fake], { env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }), input: 'LIST\n' });
    assert.is(wrongPin.code, 1);
    assert.match(wrongPin.stderr, /not the pinned/);
  } finally {
    await server.dispose();
  }
});

trust('plain TCP needs --insecure on both sides and warns', async () => {
  const server = await startServer({ args: ['--insecure'] });
  try {
    assert.match(server.output(), /WARNING: --insecure/);
    const r = await server.connect('plain_user', 'password1', ['LIST'], { signup: true });
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: --insecure/);
    assert.match(r.stdout, /PLAIN TCP, NOT ENCRYPTED/);
    const tlsClient = await runFerry(['connect', `127.0.0.1:${server.port}`, '--user', 'plain_user'], { env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }), input: 'LIST\n', timeoutMs: 20_000 });
    assert.is(tlsClient.code, 1, 'a TLS client does not fall back to plain TCP');
  } finally {
    await server.dispose();
  }
});

trust.run();
