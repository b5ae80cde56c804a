// `ferry serve --storage s3://...` end to end: the real CLI (server, connect, batch) in child processes, real TLS,
// a real object store. The original use cases (sign-up, UPLD, LIST, DWLD, MKDIR, RENAME, STAT --sha256, DELF,
// RDLOG) and a batch tree up and down; files outlive the server (a new one on the same store finds them); a bad
// store stops `ferry serve` at start with one line.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, exited, runFerry, sha256File, startFerry, startServer, tempDir, waitUntil, type ServerHandle } from '../e2e/harness.ts';
import { batch, exitedWithin, hashTree, makeTree, manifest, startBatch } from '../batch/e2e-helpers.ts';
import { allKeys, closeStore, openStore, startForwarder, withStore as withStoreIn, storeMissing, type TestStore } from './store.ts';

const t = suite('ferry serve --storage s3');
let store: TestStore | null = null;
let work: string;
const servers: ServerHandle[] = [];

t.before(async () => {
  if (storeMissing() !== null) return;
  store = await openStore();
  work = tempDir('ferry-s3-e2e-');
});

t.after(async () => {
  for (const s of servers) await s.dispose();
  if (store) await closeStore(store);
  if (work) cleanup(work);
});

async function serve(prefix: string, dataDir?: string): Promise<ServerHandle> {
  const s = store as TestStore;
  const server = await startServer({ args: ['--storage', `s3://${s.bucket}/${prefix}`, '--s3-endpoint', s.endpoint], env: s.env, ...(dataDir ? { dataDir } : {}) });
  servers.push(server);
  return server;
}

const withStore = (name: string, body: () => Promise<void>) => withStoreIn(t, name, body);

/** The file keys under a prefix (folder markers left out). */
const listHomeKeys = async (s: TestStore, prefix: string) => (await allKeys(s, prefix)).filter((k) => !k.endsWith('/'));

withStore('the original dialog against the object store, and files outlive the server', async () => {
  const server = await serve('site');
  assert.match(server.output(), /files in s3:\/\/ferry-test-[0-9a-f]+\/site at http:\/\/127\.0\.0\.1:\d+/);
  writeFileSync(join(work, 'text.txt'), 'hello from ferry to the store\n');
  const r = await server.connect('Trex_007', 'admin123', ['UPLD text.txt', 'MKDIR inbox/2026', 'UPLD text.txt inbox/2026/a.txt', 'RENAME inbox/2026/a.txt inbox/b.txt', 'STAT inbox/b.txt --sha256', 'LIST', 'DWLD text.txt back.txt', 'DELF text.txt', 'LIST', 'RDLOG', 'QUIT'], {
    signup: true,
    cwd: work,
  });
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.is(readFileSync(join(work, 'back.txt'), 'utf8'), 'hello from ferry to the store\n');
  assert.match(r.stdout, new RegExp(sha256File(join(work, 'text.txt'))), 'STAT --sha256 gives the recorded digest');
  assert.match(r.stdout, /Total directory size/);
  const keys = await allKeys(store as TestStore, 'site/');
  assert.ok(keys.includes('site/homes/Trex_007/inbox/b.txt'), keys.join(', '));
  assert.ok(!keys.includes('site/homes/Trex_007/text.txt'), 'deleted');
  // A second server on the same store and data directory sees the same files.
  await server.stop();
  const again = await serve('site', server.dataDir);
  const list = await again.connect('Trex_007', 'admin123', ['LIST inbox', 'DWLD inbox/b.txt b2.txt'], { cwd: work });
  assert.is(list.code, 0, list.stdout + list.stderr);
  assert.match(list.stdout, /b\.txt/);
  assert.is(readFileSync(join(work, 'b2.txt'), 'utf8'), 'hello from ferry to the store\n');
});

withStore('a server killed mid-upload: another server on the same store resumes from the parts stored, verified; a download killed midway resumes', async () => {
  const s = store as TestStore;
  const first = await serve('killed');
  const big = join(work, 'killed.bin');
  writeFileSync(big, randomBytes(128 * 1024 * 1024)); // large enough not to be done before the kill
  const signup = await first.connect('dora', 'dora-password', ['LIST'], { signup: true });
  assert.is(signup.code, 0, signup.stderr);
  const client = startFerry(['connect', `127.0.0.1:${first.port}`, '--user', 'dora', '--fingerprint', first.fingerprint], {
    env: childEnv(first.home, { ...s.env, FERRY_PASSWORD: 'dora-password' }),
    input: `UPLD ${big} killed.bin\n`,
  });
  // Under way: a checkpoint names parts the store has taken.
  for (const deadline = Date.now() + 60_000; (await allKeys(s, 'killed/uploads/dora/')).length === 0; ) {
    if (Date.now() > deadline || client.exitCode !== null) throw new Error(`no part stored: ${client.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await first.kill();
  await exited(client);
  const second = await serve('killed', first.dataDir);
  assert.equal(await listHomeKeys(s, 'killed/homes/dora/'), [], 'nothing visible');
  const resumed = await second.connect('dora', 'dora-password', [`UPLD ${big} killed.bin --resume`, 'STAT killed.bin --sha256'], { timeoutMs: 60_000 });
  assert.is(resumed.code, 0, resumed.stdout + resumed.stderr);
  assert.match(resumed.stdout, /\(resumed at [\d.]+ MiB\)/);
  assert.match(resumed.stdout, new RegExp(sha256File(big)));
  // A download killed midway resumes with a ranged GET from where its .ferry-part stopped.
  const back = join(work, 'killed-back.bin');
  const getter = startFerry(['connect', `127.0.0.1:${second.port}`, '--user', 'dora', '--fingerprint', second.fingerprint], {
    env: childEnv(second.home, { ...s.env, FERRY_PASSWORD: 'dora-password' }),
    input: `DWLD killed.bin ${back}\n`,
  });
  await waitUntil(() => existsSync(`${back}.ferry-part`) && statSync(`${back}.ferry-part`).size > 8 * 1024 * 1024, 60_000, 'download under way');
  getter.kill('SIGKILL');
  await exited(getter);
  const down = await second.connect('dora', 'dora-password', [`DWLD killed.bin ${back}`], { timeoutMs: 60_000 });
  assert.is(down.code, 0, down.stderr);
  assert.match(down.stdout, /resumed at/);
  assert.is(sha256File(back), sha256File(big));
  assert.equal(await allKeys(s, 'killed/uploads/'), [], 'the checkpoint went with the commit');
});

withStore('ferry batch: a tree up and back, every file verified, one large file in parts', async () => {
  const server = await serve('batch');
  const src = join(work, 'tree');
  makeTree(src, 120, 30_000);
  mkdirSync(join(src, 'big'), { recursive: true });
  writeFileSync(join(src, 'big', 'file.bin'), Buffer.alloc(20 * 1024 * 1024, 7)); // three parts of 8 MiB
  const signup = await server.connect('carol', 'carol-password', ['LIST'], { signup: true });
  assert.is(signup.code, 0, signup.stderr);
  writeFileSync(join(work, 'b.yaml'), manifest(server, 'carol', `  - put: ./tree\n    to: up/\n  - get: up/tree\n    to: ./back\n`));
  const r = await batch(server, ['b.yaml'], { cwd: work, password: 'carol-password', timeoutMs: 120_000 });
  assert.is(r.code, 0, r.stderr + r.stdout.slice(-2000));
  assert.equal(hashTree(join(work, 'back')), hashTree(src));
});

withStore('the store goes away in the middle of a ferry batch: unavailable is retried, every file arrives verified', async () => {
  const s = store as TestStore;
  const fwd = await startForwarder(s.endpoint);
  try {
    const server = await startServer({ args: ['--storage', `s3://${s.bucket}/flaky`, '--s3-endpoint', fwd.endpoint], env: s.env });
    servers.push(server);
    const signup = await server.connect('dora', 'dora-password', ['LIST'], { signup: true });
    assert.is(signup.code, 0, signup.stderr);
    const src = join(work, 'flaky-tree');
    makeTree(src, 40, 20_000);
    writeFileSync(join(src, 'big.bin'), Buffer.alloc(48 * 1024 * 1024, 3));
    writeFileSync(join(work, 'f.yaml'), manifest(server, 'dora', `  - put: ./flaky-tree\n    to: up/\n`, 'retries: 8\n'));
    const started = fwd.sent;
    const child = startBatch(server, ['f.yaml', '--json'], { cwd: work, password: 'dora-password' });
    // Cut the store off once 16 MiB have gone towards it (in the middle of the big file), for 1.5 s.
    await waitUntil(() => fwd.sent - started > 16 * 1024 * 1024 || child.exitCode !== null, 60_000, 'bytes towards the store');
    fwd.cut();
    await new Promise((r) => setTimeout(r, 1500));
    fwd.restore();
    await exitedWithin(child, 120_000, 'the batch');
    assert.is(child.exitCode, 0, child.output().slice(-3000));
    assert.match(server.output(), /unavailable/, 'the outage hit a request');
    writeFileSync(join(work, 'g.yaml'), manifest(server, 'dora', `  - get: up/flaky-tree\n    to: ./flaky-back\n`));
    const back = await batch(server, ['g.yaml'], { cwd: work, password: 'dora-password', timeoutMs: 120_000 });
    assert.is(back.code, 0, back.stderr);
    assert.equal(hashTree(join(work, 'flaky-back')), hashTree(src));
  } finally {
    await fwd.close();
  }
});

withStore('a bad store stops ferry serve at start with one line', async () => {
  const s = store as TestStore;
  const data = tempDir('ferry-s3-bad-');
  try {
    const missing = await runFerry(['serve', '--port', '0', '--data', data, '--storage', 's3://no-such-bucket-here', '--s3-endpoint', s.endpoint], { env: childEnv(data, s.env) });
    assert.is.not(missing.code, 0);
    assert.match(missing.stderr, /Bucket 'no-such-bucket-here' does not exist/);
    assert.is(missing.stderr.trim().split('\n').length, 1, missing.stderr);
    const noCreds = childEnv(data, {});
    delete noCreds.AWS_ACCESS_KEY_ID;
    delete noCreds.AWS_SECRET_ACCESS_KEY;
    const creds = await runFerry(['serve', '--port', '0', '--data', data, '--storage', `s3://${s.bucket}`, '--s3-endpoint', s.endpoint], { env: { ...noCreds, HOME: data } });
    assert.is.not(creds.code, 0);
    assert.match(creds.stderr, /credentials/i);
    const badUrl = await runFerry(['serve', '--port', '0', '--data', data, '--storage', 'ftp://x'], { env: childEnv(data, s.env) });
    assert.is.not(badUrl.code, 0);
    assert.match(badUrl.stderr, /Invalid --storage/);
  } finally {
    cleanup(data);
  }
});

t.run();
