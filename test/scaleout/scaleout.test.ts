// Several ferry servers as one (./cluster.ts: two `ferry serve` processes, one PostgreSQL database, one object store,
// a real HAProxy), driven by the real ferry CLI.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { hashTree, makeTree } from '../batch/e2e-helpers.ts';
import { childEnv, runFerry, startFerry, waitUntil, type RunResult, type ServerHandle } from '../e2e/harness.ts';
import { testWhen } from '../skip.ts';
import { clusterMissing, startCluster, startMember, stopCluster, type Cluster } from './cluster.ts';

const t = suite('several servers behind HAProxy, one database, one object store');
const when = (name: string, body: () => Promise<void>) => testWhen(t, clusterMissing, name, body);

let cluster: Cluster | null = null;

const QUOTA_BYTES = 1024 * 1024;

/** The cluster, started once for the file: two servers with the quota plugin, then HAProxy in front of them. */
async function up(): Promise<Cluster> {
  cluster ??= await startCluster({
    prefix: 'scaleout',
    config: `plugins:\n  - name: quota\n    options:\n      users:\n        quota_user: { maxBytes: ${QUOTA_BYTES} }\n`,
  });
  return cluster;
}

t.after(async () => {
  if (cluster) await stopCluster(cluster);
});

/** `ferry connect` to one server directly (over ::1), or through the balancer. */
function connect(target: ServerHandle | 'balancer', user: string, password: string, input: string[], extra: string[] = []): Promise<RunResult> {
  const c = cluster as Cluster;
  const server = c.servers[0] as ServerHandle;
  const where = target === 'balancer' ? `127.0.0.1:${c.haPort}` : `[::1]:${target.port}`;
  return runFerry(['connect', where, '--user', user, '--fingerprint', server.fingerprint, ...extra], {
    input: input.join('\n') + '\n',
    env: childEnv(server.home, { FERRY_PASSWORD: password }),
    timeoutMs: 60_000,
  });
}

when('every server presents the one shared TLS identity, made by exactly one of them', async () => {
  const c = await up();
  const [a, b] = c.servers as [ServerHandle, ServerHandle];
  assert.match(a.fingerprint, /^SHA256:/);
  assert.is(b.fingerprint, a.fingerprint);
  const made = c.servers.filter((s) => /created a new TLS identity .* in the shared database/.test(s.output()));
  assert.is(made.length, 1, 'one server made it, the other loaded it');
  for (const s of c.servers) assert.match(s.output(), /accounts, throttles, audit log and TLS identity shared in postgres:\/\//);
  // Through the balancer, twice (leastconn spreads them), the client's pin holds.
  for (let i = 0; i < 2; i++) {
    const r = await connect('balancer', 'nobody', 'wrong-password', ['LIST']);
    assert.ok(r.stdout.includes(`Connection successful (TLS, fingerprint ${a.fingerprint})`), r.stdout + r.stderr);
    assert.match(r.stderr, /Wrong user name or password/, r.stdout + r.stderr);
  }
});

when('six sign-ups of one name on two servers at the same moment: exactly one wins', async () => {
  const c = await up();
  const runs = await Promise.all(
    Array.from({ length: 6 }, (_, i) => connect(c.servers[i % 2] as ServerHandle, i % 2 ? 'Racer' : 'racer', `password-${i}`, ['LIST'], ['--signup'])),
  );
  const taken = runs.filter((r) => r.code !== 0 && /User name '[Rr]acer' is taken \(user_exists\)/.test(r.stderr));
  const won = runs.filter((r) => r.code === 0 && /Total directory size/.test(r.stdout));
  assert.is(won.length, 1, runs.map((r) => `${r.code}: ${(r.stdout + r.stderr).slice(-200)}`).join('\n---\n'));
  assert.is(taken.length, 5);
  const rdlog = await connect(c.servers[0] as ServerHandle, 'racer', `password-${runs.indexOf(won[0] as RunResult)}`, ['RDLOG']);
  assert.is((rdlog.stdout.match(/SIGNUP: Signed up user/g) ?? []).length, 1, rdlog.stdout);
});

when('failed log-ins on server A count on server B: the name is locked out everywhere', async () => {
  const c = await up();
  const [a, b] = c.servers as [ServerHandle, ServerHandle];
  const made = await connect(a, 'guarded', 'right-password', ['LIST'], ['--signup']);
  assert.is(made.code, 0, made.stderr);
  for (let i = 0; i < 5; i++) {
    const r = await connect(i % 2 ? a : b, 'guarded', 'wrong-password', ['LIST']);
    assert.is.not(r.code, 0);
  }
  for (const s of [a, b]) {
    const r = await connect(s, 'guarded', 'right-password', ['LIST']);
    assert.is.not(r.code, 0, 'locked out on both servers');
    assert.match(r.stdout + r.stderr, /Too many failed log-ins/);
  }
});

when('RDLOG on either server shows both servers\' events in order; the real client address (PROXY) is in the audit line', async () => {
  const c = await up();
  const [a, b] = c.servers as [ServerHandle, ServerHandle];
  const signed = await connect(a, 'logger', 'password-1', ['MKDIR on-a'], ['--signup']);
  assert.is(signed.code, 0, signed.stderr);
  const made = await connect(b, 'logger', 'password-1', ['MKDIR on-b']);
  assert.is(made.code, 0, made.stderr);
  const viaBalancer = await connect('balancer', 'logger', 'password-1', ['MKDIR via-ha']);
  assert.is(viaBalancer.code, 0, viaBalancer.stderr);
  for (const s of [a, b]) {
    const r = await connect(s, 'logger', 'password-1', ['RDLOG']);
    const log = r.stdout;
    const order = ['on-a', 'on-b', 'via-ha'].map((name) => log.indexOf(`'${name}'`));
    assert.ok(order.every((i) => i > 0) && order[0]! < order[1]! && order[1]! < order[2]!, log);
    assert.match(log, /Signed up user 'logger' from \[?::1\]?:\d+/);
  }
  // HAProxy logs each connection with the client's source port: that port (not the balancer's) is in the audit line.
  const haLog = readFileSync(join(c.ha, 'haproxy.log'), 'utf8');
  const ports = [...haLog.matchAll(/^127\.0\.0\.1:(\d+) \[/gm)].map((m) => m[1]);
  const r = await connect(a, 'logger', 'password-1', ['RDLOG']);
  const seen = [...r.stdout.matchAll(/from 127\.0\.0\.1:(\d+)/g)].map((m) => m[1]);
  assert.ok(seen.length > 0 && seen.every((p) => ports.includes(p)), `${r.stdout}\n${haLog}`);
});

when('a PROXY header from a client that is not the balancer is refused and never believed', async () => {
  const c = await up();
  const a = c.servers[0] as ServerHandle;
  const socket = net.connect({ host: '::1', port: a.port });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write('PROXY TCP4 6.6.6.6 127.0.0.1 4444 2121\r\n');
  await closed;
  await a.waitFor(/\[::1\] refused: .*PROXY/i);
  const r = await connect(a, 'logger', 'password-1', ['RDLOG']);
  assert.not.match(r.stdout, /6\.6\.6\.6/);
});

when('two uploads on two servers that together pass the quota: exactly the one that fits succeeds; usage is shared', async () => {
  const c = await up();
  const [a, b] = c.servers as [ServerHandle, ServerHandle];
  const signed = await connect(a, 'quota_user', 'password-1', ['LIST'], ['--signup']);
  assert.is(signed.code, 0, signed.stderr);
  const files = join(c.dir, 'quota-files');
  mkdirSync(files, { recursive: true });
  writeFileSync(join(files, 'one.bin'), Buffer.alloc(700 * 1024, 1));
  writeFileSync(join(files, 'two.bin'), Buffer.alloc(700 * 1024, 2));
  const [r1, r2] = await Promise.all([
    connect(a, 'quota_user', 'password-1', [`PUT ${join(files, 'one.bin')} one.bin`]),
    connect(b, 'quota_user', 'password-1', [`PUT ${join(files, 'two.bin')} two.bin`]),
  ]);
  const text = [r1, r2].map((r) => r.stdout + r.stderr);
  assert.is(text.filter((x) => /sha256 verified/.test(x)).length, 1, text.join('\n---\n'));
  assert.is(text.filter((x) => /quota exceeded/i.test(x)).length, 1, text.join('\n---\n'));
  // Either server knows what is stored: a third file does not fit on either.
  writeFileSync(join(files, 'three.bin'), Buffer.alloc(400 * 1024, 3));
  for (const s of [a, b]) {
    const r = await connect(s, 'quota_user', 'password-1', [`PUT ${join(files, 'three.bin')} three.bin`]);
    assert.match(r.stdout + r.stderr, /quota exceeded/i);
  }
});

when('two servers uploading the same file at the same moment: one stores it, the other is told it is in progress', async () => {
  const c = await up();
  const [a, b] = c.servers as [ServerHandle, ServerHandle];
  const signed = await connect(a, 'twins', 'password-1', ['LIST'], ['--signup']);
  assert.is(signed.code, 0, signed.stderr);
  const big = join(c.dir, 'same.bin');
  writeFileSync(big, Buffer.alloc(96 * 1024 * 1024, 5));
  const runs = await Promise.all([a, b].map((s) => connect(s, 'twins', 'password-1', [`PUT ${big} same.bin`])));
  const text = runs.map((r) => r.stdout + r.stderr);
  assert.is(text.filter((x) => /sha256 verified/.test(x)).length, 1, text.join('\n---\n'));
  assert.is(text.filter((x) => /an upload of it is in progress on another server/.test(x)).length, 1, text.join('\n---\n'));
});

when('a 500-file batch through the balancer while one server is SIGKILLed midway: completes on the other, every file verified, nothing partial', async () => {
  const c = await up();
  const work = join(c.dir, 'batch');
  makeTree(join(work, 'data'), 500, 64 * 1024);
  // A larger file too, so that a multipart upload is in flight when the server dies.
  writeFileSync(join(work, 'data', 'big.bin'), Buffer.alloc(24 * 1024 * 1024, 7));
  const signed = await connect('balancer', 'mover', 'password-1', ['LIST'], ['--signup']);
  assert.is(signed.code, 0, signed.stderr);
  const fp = (c.servers[0] as ServerHandle).fingerprint;
  const header = `server: 127.0.0.1:${c.haPort}\nfingerprint: ${fp}\nuser: mover\npassword: \${FERRY_PASSWORD}\nretries: 8\nconcurrency: 4\n`;
  writeFileSync(join(work, 'up.yaml'), `${header}ops:\n  - put: ./data\n    to: moved/\n`);
  const env = childEnv((c.servers[0] as ServerHandle).home, { FERRY_PASSWORD: 'password-1' });
  const child = startFerry(['batch', 'up.yaml'], { env, cwd: work });
  try {
    const journal = join(work, 'up.yaml.journal');
    const lines = () => (existsSync(journal) ? readFileSync(journal, 'utf8').split('\n').filter(Boolean).length : 0);
    await waitUntil(() => lines() > 60 || child.exitCode !== null, 60_000, 'some files stored');
    assert.is(child.exitCode, null, 'the batch ended before a server could be killed');
    // Kill the server that holds the batch's connection.
    const victim = c.servers.find((s) => openSessionsOf(s, 'mover') > 0);
    assert.ok(victim, c.servers.map((s) => s.output().slice(-1500)).join('\n---\n'));
    await victim.kill();
    await waitUntil(() => child.exitCode !== null, 120_000, 'the batch to finish');
    assert.is(child.exitCode, 0, child.output().slice(-3000));
    assert.match(child.output(), /^done: transferred 501 files/m);
    // Back through the balancer (the survivor): every file, and only these, with the same bytes.
    writeFileSync(join(work, 'down.yaml'), `${header}ops:\n  - get: moved/data\n    to: ./back\n`);
    const back = await runFerry(['batch', 'down.yaml'], { env, cwd: work, timeoutMs: 120_000 });
    assert.is(back.code, 0, back.stdout + back.stderr);
    const want = hashTree(join(work, 'data'));
    const got = hashTree(join(work, 'back'));
    assert.is(got.size, 501);
    assert.equal(got, want);
    // Restart the killed server on its port, for any test after this one.
    const idx = c.servers.indexOf(victim);
    c.servers[idx] = await startMember(c, idx === 0 ? 'a' : 'b', victim.home, victim.port);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

/** Sessions of `user` on `server` that logged in and have not disconnected, from its console lines. */
function openSessionsOf(server: ServerHandle, user: string): number {
  const open = new Set<string>();
  for (const line of server.output().split('\n')) {
    const id = /^\S* ?\[#(\d+) /.exec(line)?.[1] ?? /\[#(\d+) /.exec(line)?.[1];
    if (id === undefined) continue;
    if (line.includes(`Authentication successful for user: ${user}`)) open.add(id);
    else if (/\] Disconnected/.test(line)) open.delete(id);
  }
  return open.size;
}

t.run();
