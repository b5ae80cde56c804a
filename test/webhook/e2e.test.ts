/**
 * The webhook plugin end to end: real `ferry serve` processes with the bundled plugin, real `ferry connect`
 * clients, and a real HTTP receiver on 127.0.0.1 that checks every signature.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, runFerry, startServer, tempDir, waitUntil, type RunResult, type ServerHandle } from '../e2e/harness.ts';
import { Receiver } from './receiver.ts';

const SECRET = 'e2e-webhook-secret-0123456789';
const UPLOADS_SECRET = 'uploads-only-secret';

/** A value with its keys sorted, so that two events compare as text. */
function canonical(value: Record<string, unknown>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b))));
}

function auditEvents(dataDir: string): Array<Record<string, unknown>> {
  return readFileSync(join(dataDir, 'audit.log'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The events of a path, each once (by id), in the order first seen, as canonical text. */
function receivedOnce(receiver: Receiver, path: string): string[] {
  const seen = new Map<string, string>();
  for (const r of receiver.events(path)) {
    const text = canonical(r.event);
    const before = seen.get(r.id);
    if (before !== undefined && before !== text) throw new Error(`id ${r.id} came with two different events:\n${before}\n${text}`);
    if (before === undefined) seen.set(r.id, text);
  }
  return [...seen.values()];
}

function ok(r: RunResult, what: string): RunResult {
  assert.is(r.code, 0, `${what}: ${r.stderr}${r.stdout}`);
  return r;
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  const value = await run();
  return { value, ms: Date.now() - t0 };
}

async function until(check: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting: ${what()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

let work: string;
const webhook = suite('webhook plugin with a real receiver');

webhook.before(() => {
  work = tempDir('ferry-webhook-');
  for (const name of ['a.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt', 'f.txt']) writeFileSync(join(work, name), `contents of ${name}\n`.repeat(50));
  writeFileSync(join(work, 'big.bin'), Buffer.alloc(2 * 1024 * 1024, 7));
});
webhook.after(() => cleanup(work));

function writeConfig(file: string, port: number, maxRetryMs = 1000): string {
  writeFileSync(
    file,
    `plugins:
  - name: webhook
    options:
      maxRetryMs: ${maxRetryMs}
      endpoints:
        - url: http://127.0.0.1:${port}/all
          secretEnv: FERRY_TEST_WEBHOOK_SECRET
          batchSize: 5
          flushMs: 100
        - url: http://127.0.0.1:${port}/uploads
          secret: ${UPLOADS_SECRET}
          events: [upload]
          flushMs: 100
`,
  );
  return file;
}

webhook('every event reaches the receiver exactly once by id, across receiver downtime and a server restart', async () => {
  const receiver = new Receiver({ '/all': SECRET, '/uploads': UPLOADS_SECRET });
  const port = await receiver.up();
  const config = writeConfig(join(work, 'webhook.yaml'), port);
  const env = { FERRY_TEST_WEBHOOK_SECRET: SECRET };
  let server: ServerHandle | null = await startServer({ args: ['--config', config], env });
  const { dataDir, home } = server;
  const root = server.root;
  const figures: string[] = [];
  try {
    assert.match(server.output(), /plugins: webhook/);
    assert.match(server.output(), /\[plugin webhook\] Sending all events to http:\/\/127\.0\.0\.1:\d+\/all/);
    assert.match(server.output(), /\[plugin webhook\] Sending upload to http:\/\/127\.0\.0\.1:\d+\/uploads/);

    // 1. Receiver up: sign-up, uploads, a delete.
    const upWhileUp = await timed(() => server!.connect('hooky', 'password1', ['UPLD a.txt', 'UPLD big.bin', 'UPLD b.txt'], { signup: true, cwd: work }));
    ok(upWhileUp.value, 'uploads with the receiver up');
    ok(await server.connect('hooky', 'password1', ['DELF a.txt', 'MKDIR docs'], { cwd: work }), 'delete and mkdir');
    await until(() => receivedOnce(receiver, '/all').length === auditEvents(dataDir).length, 10_000, () => `${receivedOnce(receiver, '/all').length} of ${auditEvents(dataDir).length} events`);
    // Latency: from the time the server recorded an event to its arrival at the receiver.
    const lags = receiver.events('/all').map((e) => e.at - Date.parse(String(e.event.time))).sort((a, b) => a - b);
    figures.push(`delivery latency with the receiver up (flushMs 100, batchSize 5): median ${lags[Math.floor(lags.length / 2)]} ms, max ${lags.at(-1)} ms over ${lags.length} events`);

    // 2. Receiver down: more transfers, which must not be slowed or failed.
    await receiver.down();
    const upWhileDown = await timed(() => server!.connect('hooky', 'password1', ['UPLD c.txt', 'UPLD big.bin big2.bin', 'UPLD f.txt'], { cwd: work }));
    ok(upWhileDown.value, 'uploads with the receiver down');
    ok(await server.connect('hooky', 'password1', ['DELF b.txt'], { cwd: work }), 'delete with the receiver down');
    const serverMs = (name: string) => Number(new RegExp(`UPLD ${name}: received \\d+ B in (\\d+) ms`).exec(server!.output())?.[1]);
    figures.push(`2 MiB upload on the server: ${serverMs('big.bin')} ms with the receiver up, ${serverMs('big2.bin')} ms down; client runs ${upWhileUp.ms} ms up, ${upWhileDown.ms} ms down`);
    assert.ok(upWhileDown.ms < upWhileUp.ms + 3000, `transfers are not slowed: ${upWhileDown.ms} ms vs ${upWhileUp.ms} ms`);
    assert.ok(serverMs('big2.bin') < serverMs('big.bin') + 1000, 'the upload itself is not slowed');
    await server.waitFor(/\[plugin webhook\] Delivery to http:\/\/127\.0\.0\.1:\d+\/all failed: .*ECONNREFUSED/, 10_000);

    // 3. The ferry server restarts while the receiver is still down.
    const stopT0 = Date.now();
    await server.stop();
    figures.push(`server stop with the receiver down: ${Date.now() - stopT0} ms`);
    assert.is(server.process.exitCode, 0, `clean stop: ${server.output()}`);
    assert.match(server.output(), /event\(s\) stay queued for delivery after the next start/);
    server = await startServer({ dataDir, home, args: ['--config', config], env });
    assert.match(server.output(), /Sending all events to .*\/all \(\d+ queued from before\)/);
    ok(await server.connect('hooky', 'password1', ['UPLD d.txt', 'UPLD e.txt', 'RENAME e.txt docs/e.txt', 'LIST'], { cwd: work }), 'operations after the restart, receiver down');
    assert.is((await server.connect('hooky', 'wrong-password', ['LIST'], { cwd: work })).code, 1, 'a failed log-in');
    await new Promise((r) => setTimeout(r, 1500)); // a few retries fail meanwhile

    // 4. The receiver comes back on the same port: everything arrives.
    assert.is(await receiver.up(), port);
    const backAt = Date.now();
    const expected = () => auditEvents(dataDir).map(canonical);
    await until(() => receivedOnce(receiver, '/all').length >= expected().length, 20_000, () => `${receivedOnce(receiver, '/all').length} of ${expected().length} events after the receiver came back`);
    figures.push(`backlog delivered ${Date.now() - backAt} ms after the receiver came back (maxRetryMs 1000)`);
    await new Promise((r) => setTimeout(r, 500)); // late duplicates, if any, would land now

    const audit = expected();
    const got = receivedOnce(receiver, '/all');
    assert.is(receiver.badSignatures, 0, 'every request carried a valid signature');
    assert.is(got.length, audit.length, 'one id per audit event');
    assert.equal([...got].sort(), [...audit].sort(), 'the events received are exactly those of audit.log');
    assert.equal(got, audit, 'first arrivals are in audit-log order');
    const types = new Set(audit.map((e) => (JSON.parse(e) as { event: string }).event));
    for (const t of ['signup', 'login', 'login_failed', 'upload', 'delete', 'mkdir', 'rename']) assert.ok(types.has(t), `the run produced a ${t} event`);

    // The filtered endpoint got every upload, and nothing else.
    const uploads = audit.filter((e) => (JSON.parse(e) as { event: string }).event === 'upload');
    await until(() => receivedOnce(receiver, '/uploads').length >= uploads.length, 10_000, () => 'uploads endpoint');
    const gotUploads = receivedOnce(receiver, '/uploads');
    assert.equal([...gotUploads].sort(), [...uploads].sort());
    assert.ok(receiver.events('/uploads').every((e) => e.event.event === 'upload'));
    // The same event has the same id at both endpoints.
    const idsAll = new Set(receiver.ids('/all'));
    assert.ok(receiver.ids('/uploads').every((id) => idsAll.has(id)));

    figures.push(`${audit.length} events, ${receiver.events('/all').length} received on /all (${receiver.duplicates('/all')} duplicates), ${receiver.events('/uploads').length} on /uploads (${receiver.duplicates('/uploads')} duplicates), ${receiver.requests.length} requests`);
    // Failures are logged, but not once per retry.
    const warnings = server.output().split('\n').filter((l) => /\[plugin webhook\] Delivery to .* (failed:|still failing)/.test(l));
    assert.ok(warnings.length <= 2, warnings.join('\n'));
    assert.match(server.output(), /Delivery to http:\/\/127\.0\.0\.1:\d+\/all works again after \d+ failed attempt/);
    console.log(`    ${figures.join('\n    ')}`);
  } finally {
    await server?.stop();
    await receiver.down();
    if (root) cleanup(root);
    cleanup(home);
  }
});

webhook('a receiver that refuses (wrong secret) loses nothing: the events wait, and arrive once the secret is fixed', async () => {
  const receiver = new Receiver({ '/all': 'the-right-secret', '/uploads': UPLOADS_SECRET });
  const port = await receiver.up();
  const config = writeConfig(join(work, 'webhook-401.yaml'), port, 300);
  let server = await startServer({ args: ['--config', config], env: { FERRY_TEST_WEBHOOK_SECRET: 'a-wrong-secret' } });
  const { dataDir, home } = server;
  const root = server.root;
  try {
    ok(await server.connect('refused', 'password1', ['UPLD a.txt', 'UPLD b.txt'], { signup: true, cwd: work }), 'uploads');
    await until(() => receiver.requests.filter((r) => r.path === '/all' && r.status === 401).length >= 5, 10_000, () => 'refused attempts');
    const refusals = server.output().split('\n').filter((l) => /\[plugin webhook\] Delivery to .*\/all (failed|still failing)/.test(l));
    assert.is(refusals.length, 1, server.output());
    assert.match(refusals[0] ?? '', /HTTP 401 "bad signature" \(the receiver refuses them: check the URL and secret/);
    assert.is(receiver.events('/all').length, 0);
    await server.stop();
    server = await startServer({ dataDir, home, args: ['--config', config], env: { FERRY_TEST_WEBHOOK_SECRET: 'the-right-secret' } });
    const audit = auditEvents(dataDir).map(canonical);
    await until(() => receivedOnce(receiver, '/all').length >= audit.length, 10_000, () => `${receivedOnce(receiver, '/all').length} of ${audit.length}`);
    assert.equal(receivedOnce(receiver, '/all'), audit);
    assert.is(receiver.duplicates('/all'), 0);
  } finally {
    await server.stop();
    await receiver.down();
    if (root) cleanup(root);
    cleanup(home);
  }
});

webhook('events queued while the receiver is down survive a server killed with SIGKILL', async () => {
  const receiver = new Receiver({ '/all': SECRET, '/uploads': UPLOADS_SECRET });
  const port = await receiver.up();
  await receiver.down();
  const config = writeConfig(join(work, 'webhook-kill.yaml'), port);
  const env = { FERRY_TEST_WEBHOOK_SECRET: SECRET };
  let server = await startServer({ args: ['--config', config], env });
  const { dataDir, home } = server;
  const root = server.root;
  try {
    ok(await server.connect('killed', 'password1', ['UPLD a.txt', 'UPLD c.txt', 'DELF a.txt'], { signup: true, cwd: work }), 'operations');
    await new Promise((r) => setTimeout(r, 300));
    await server.kill();
    assert.is(server.process.signalCode, 'SIGKILL');
    server = await startServer({ dataDir, home, args: ['--config', config], env });
    await receiver.up();
    const audit = auditEvents(dataDir).map(canonical);
    await until(() => receivedOnce(receiver, '/all').length >= audit.length, 15_000, () => `${receivedOnce(receiver, '/all').length} of ${audit.length}`);
    assert.equal(receivedOnce(receiver, '/all'), audit);
    assert.is(receiver.badSignatures, 0);
  } finally {
    await server.stop();
    await receiver.down();
    if (root) cleanup(root);
    cleanup(home);
  }
});

webhook('an endpoint that accepts connections and never answers neither slows transfers nor holds up the server stop', async () => {
  const sockets = new Set<Socket>();
  const blackHole = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', () => r()));
  const port = (blackHole.address() as AddressInfo).port;
  const config = writeConfig(join(work, 'webhook-hang.yaml'), port);
  const server = await startServer({ args: ['--config', config], env: { FERRY_TEST_WEBHOOK_SECRET: SECRET } });
  try {
    const run = await timed(() => server.connect('patient', 'password1', ['UPLD a.txt', 'UPLD big.bin', 'UPLD c.txt', 'LIST'], { signup: true, cwd: work }));
    ok(run.value, 'uploads against a black-hole endpoint');
    assert.ok(run.ms < 10_000, `${run.ms} ms`);
    await waitUntil(() => sockets.size > 0, 5000, 'the plugin to connect');
    const t0 = Date.now();
    await server.stop();
    assert.ok(Date.now() - t0 < 4000, `stop took ${Date.now() - t0} ms`);
    assert.is(server.process.exitCode, 0, server.output());
    assert.match(server.output(), /\d+ event\(s\) stay queued/);
  } finally {
    await server.dispose();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => blackHole.close(() => r()));
  }
});

webhook('bad webhook options stop the server at start with a clear error', async () => {
  const file = join(work, 'bad.yaml');
  writeFileSync(file, `plugins:\n  - name: webhook\n    options:\n      endpoints:\n        - url: http://127.0.0.1:1/x\n          secret: k\n          events: [upload, uplod]\n`);
  const home = tempDir('ferry-home-');
  try {
    const r = await runFerry(['serve', '--host', '127.0.0.1', '--port', '0', '--data', join(work, 'data-bad'), '--config', file], { env: childEnv(home), timeoutMs: 15_000 });
    assert.is(r.code, 1, r.stdout);
    assert.match(r.stderr, /Plugin 'webhook': invalid options: endpoints\[0\]\.events: unknown event type 'uplod' \(known: login, /);
  } finally {
    cleanup(home);
  }
});

webhook.run();
