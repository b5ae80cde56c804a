// IPv6: `ferry serve` listens dual-stack by default, and `[::1]:port` works wherever a server is written —
// `ferry connect`, a batch manifest, the known_hosts file — for a whole session over ::1. A client that comes in
// over IPv4 to the dual-stack socket is shown and throttled by its IPv4 address, not as ::ffff:a.b.c.d.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, runFerry, startServer, tempDir, type ServerHandle } from './harness.ts';

const t = suite('IPv6');
let server: ServerHandle;
let work: string;

t.before(async () => {
  server = await startServer({ host: null });
  work = tempDir();
  writeFileSync(join(work, 'six.txt'), 'over ipv6');
});

t.after(async () => {
  await server.dispose();
  cleanup(work);
});

const connect = (address: string, commands: string[], extra: string[] = []) =>
  runFerry(['connect', address, '--user', 'sixer', ...extra], {
    input: `${commands.join('\n')}\n`,
    env: childEnv(server.home, { FERRY_PASSWORD: 'a-long-password' }),
    cwd: work,
  });

t('by default the server listens on every address, IPv6 and IPv4 (dual-stack)', () => {
  assert.match(server.output(), /listening on \[::\]:\d+ \(TLS 1\.3\)/);
});

t('a whole session over [::1]:port: sign-up, upload, list, download, log; known_hosts remembers [::1]:port', async () => {
  const r = await connect(`[::1]:${server.port}`, ['UPLD six.txt', 'LIST', 'DWLD six.txt back.txt', 'RDLOG', 'QUIT'], ['--signup', '--fingerprint', server.fingerprint]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /sha256 verified: [0-9a-f]{64}/);
  assert.match(r.stdout, /six\.txt\s+9 B \(9\)/);
  assert.is(readFileSync(join(work, 'back.txt'), 'utf8'), 'over ipv6');
  assert.match(r.stdout, /- UPLOAD: Uploaded file 'six\.txt' by 'sixer'/);
  assert.match(server.output(), new RegExp(`\\[#\\d+ \\[::1\\]:\\d+\\] Connected`));
  const known = readFileSync(join(server.home, 'known_hosts'), 'utf8');
  assert.match(known, new RegExp(`^\\[::1\\]:${server.port} ${server.fingerprint.replace(/[+/]/g, '\\$&')}$`, 'm'));
  const audit = readFileSync(join(server.dataDir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(audit.some((e) => e.event === 'upload' && /^\[::1\]:\d+$/.test(e.address)), JSON.stringify(audit));
});

t('a known [::1]:port needs no fingerprint the next time (connect and a batch manifest)', async () => {
  const again = await connect(`[::1]:${server.port}`, ['LIST']);
  assert.is(again.code, 0, again.stderr);
  const dir = join(work, 'batch');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'a.txt'), 'batch over ipv6');
  writeFileSync(
    join(dir, 'm.yaml'),
    `server: "[::1]:${server.port}"\nuser: sixer\npassword: \${FERRY_PASSWORD}\nops:\n  - put: ./a.txt\n    to: from-batch/\n  - get: from-batch/a.txt\n    to: ./got.txt\n`,
  );
  const b = await runFerry(['batch', 'm.yaml'], { env: childEnv(server.home, { FERRY_PASSWORD: 'a-long-password' }), cwd: dir });
  assert.is(b.code, 0, b.stdout + b.stderr);
  assert.is(readFileSync(join(dir, 'got.txt'), 'utf8'), 'batch over ipv6');
});

t('a client over IPv4 to the dual-stack socket is shown by its IPv4 address', async () => {
  const r = await connect(`127.0.0.1:${server.port}`, ['LIST'], ['--fingerprint', server.fingerprint]);
  assert.is(r.code, 0, r.stderr);
  assert.match(server.output(), /\[#\d+ 127\.0\.0\.1:\d+\] Connected/);
  assert.not.match(server.output(), /::ffff:/);
  const audit = readFileSync(join(server.dataDir, 'audit.log'), 'utf8');
  assert.not.match(audit, /::ffff:/);
});

t.run();
