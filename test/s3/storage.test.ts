// The s3 storage driver against a real object store (OpenStack Swift with s3api, started by
// scripts/services/swift.sh): every operation, its refusals with the local driver's codes, confinement to the
// user's keys under the prefix, verified commits that leave nothing visible on a mismatch, the conditional
// create across two servers, and a store that is not there.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CreateMultipartUploadCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import type { FerryError } from '../../src/core/errors.ts';
import type { Entry } from '../../src/core/types.ts';
import { S3Driver } from '../../src/storage/s3/mod.ts';
import { PART_SIZE } from '../../src/storage/s3/upload.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { allKeys, closeStore, openStore, withStore as withStoreIn, openUploads, startForwarder, storeMissing, type TestStore } from './store.ts';

const t = suite('s3 storage');
const PREFIX = 'srv/one';
let store: TestStore | null = null;
let driver: S3Driver;
let alice: Storage;

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const codeOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (err: unknown) => (err as FerryError).code ?? String(err),
  );

async function put(storage: Storage, path: string, bytes: Buffer, options: { overwrite?: boolean; parents?: boolean; mtime?: number; chunk?: number } = {}): Promise<Entry> {
  const up = await storage.createUpload(path, { size: bytes.length, ...options });
  const chunk = options.chunk ?? 1024 * 1024;
  for (let at = 0; at < bytes.length; at += chunk) await up.write([bytes.subarray(at, at + chunk)]);
  return up.commit(sha(bytes));
}

async function readAll(storage: Storage, path: string): Promise<Buffer> {
  const h = await storage.openRead(path);
  const parts: Buffer[] = [];
  for (let at = 0; at < h.size; ) {
    const b = await h.read(at, 700_000);
    if (b.length === 0) break;
    parts.push(b);
    at += b.length;
  }
  await h.close();
  return Buffer.concat(parts);
}

async function names(storage: Storage, path: string, pageSize?: number): Promise<string[]> {
  const out: string[] = [];
  for await (const page of storage.list(path, pageSize)) out.push(...page.map((e) => `${e.type === 'dir' ? 'd' : 'f'} ${e.name}`));
  return out;
}

t.before(async () => {
  if (storeMissing() !== null) return;
  store = await openStore();
  driver = new S3Driver({ bucket: store.bucket, prefix: PREFIX }, { endpoint: store.endpoint });
  await driver.check();
  alice = driver.forUser('alice');
});

t.after(async () => {
  if (store === null) return;
  driver.close();
  await closeStore(store);
});

/** Runs `body` when the store is there; skips (counted, never passed) otherwise. */
const withStore = (name: string, body: () => Promise<void>) => withStoreIn(t, name, body);

withStore('a small file: stored whole with its time and SHA-256, listed, read back, stat exact', async () => {
  const bytes = Buffer.from('hello object store');
  const entry = await put(alice, 'notes.txt', bytes, { mtime: 1_796_228_384_741 });
  assert.equal(entry, { name: 'notes.txt', type: 'file', size: bytes.length, mtime: 1_796_228_384_741 });
  assert.equal(await alice.stat('notes.txt'), entry);
  assert.ok((await readAll(alice, 'notes.txt')).equals(bytes));
  assert.is(await alice.recordedSha256?.('notes.txt'), sha(bytes));
  assert.ok((await names(alice, '')).includes('f notes.txt'));
  const keys = await allKeys(store as TestStore);
  assert.ok(keys.includes(`${PREFIX}/homes/alice/notes.txt`), `the key layout: ${keys.join(', ')}`);
});

withStore('a large file streams into a multipart upload, verified; reads resume at any offset', async () => {
  const bytes = randomBytes(2 * PART_SIZE + 12_345);
  const entry = await put(alice, 'big/data.bin', bytes, { parents: true, chunk: 256 * 1024 });
  assert.is(entry.size, bytes.length);
  assert.ok((await readAll(alice, 'big/data.bin')).equals(bytes));
  const h = await alice.openRead('big/data.bin');
  const mid = Buffer.alloc(100_000);
  assert.is(await h.readInto(mid, PART_SIZE - 50_000), 100_000);
  assert.ok(mid.equals(bytes.subarray(PART_SIZE - 50_000, PART_SIZE + 50_000)), 'a read across a part boundary');
  await h.close();
  assert.equal(await openUploads(store as TestStore), [], 'no multipart upload left open');
});

withStore('a digest or size mismatch leaves nothing visible and no upload open', async () => {
  for (const size of [1000, PART_SIZE + 1000]) {
    const bytes = randomBytes(size);
    const up = await alice.createUpload(`bad-${size}.bin`, { size });
    await up.write([bytes]);
    assert.is(await codeOf(up.commit(sha('something else'))), 'digest_mismatch');
    await up.abort(false);
    assert.is(await alice.stat(`bad-${size}.bin`), null);
    const short = await alice.createUpload(`short-${size}.bin`, { size });
    await short.write([bytes.subarray(0, size - 1)]);
    assert.is(await codeOf(short.commit(sha(bytes))), 'size_mismatch');
    await short.abort(false);
    assert.is(await alice.stat(`short-${size}.bin`), null);
    const long = await alice.createUpload(`long-${size}.bin`, { size: 10 });
    assert.is(await codeOf(long.write([bytes])), 'size_mismatch');
    await long.abort(false);
  }
  assert.equal(await openUploads(store as TestStore), []);
});

withStore('exists, overwrite, is_a_directory, missing parents: the local driver\'s refusals', async () => {
  await put(alice, 'e.txt', Buffer.from('one'));
  assert.is(await codeOf(put(alice, 'e.txt', Buffer.from('two'))), 'exists');
  await put(alice, 'e.txt', Buffer.from('three'), { overwrite: true });
  assert.is((await readAll(alice, 'e.txt')).toString(), 'three');
  await alice.mkdir('folder');
  assert.is(await codeOf(put(alice, 'folder', Buffer.from('x'), { overwrite: true })), 'is_a_directory');
  assert.is(await codeOf(put(alice, 'no/such/dir/f.txt', Buffer.from('x'))), 'not_found');
  assert.is(await codeOf(put(alice, 'e.txt/under', Buffer.from('x'), { parents: true })), 'not_a_directory');
  assert.is(await codeOf(alice.putWhole('w.txt', Buffer.from('w'), { sha256: sha('other') })), 'digest_mismatch');
  await alice.putWhole('made/for/it/w.txt', Buffer.from('w'), { sha256: sha('w'), parents: true, mayCreateParents: true });
  assert.is((await alice.stat('made/for'))?.type, 'dir');
  assert.is(await codeOf(alice.openRead('made')), 'is_a_directory');
  assert.is(await codeOf(alice.openRead('nothing')), 'not_found');
});

withStore('two servers creating one new file: the second commit finds the first by its condition (If-None-Match), small and large', async () => {
  const other = new S3Driver({ bucket: (store as TestStore).bucket, prefix: PREFIX }, { endpoint: (store as TestStore).endpoint });
  try {
    const bob = other.forUser('alice');
    for (const size of [100, PART_SIZE + 100]) {
      const a = randomBytes(size);
      const b = randomBytes(size);
      // Both start while the file does not exist (each one's own check passes), and both hold their bytes.
      const upA = await alice.createUpload(`race-${size}`, { size });
      const upB = await bob.createUpload(`race-${size}`, { size });
      await upA.write([a]);
      await upB.write([b]);
      assert.is(await codeOf(upA.commit(sha(a))), 'ok');
      assert.is(await codeOf(upB.commit(sha(b))), 'exists', 'only the conditional complete can refuse it now');
      assert.ok((await readAll(alice, `race-${size}`)).equals(a), 'the first one, whole');
    }
  } finally {
    other.close();
  }
  assert.equal(await openUploads(store as TestStore), []);
});

withStore('mkdir, remove, folders kept while empty, not_empty', async () => {
  await alice.mkdir('d1');
  assert.is(await codeOf(alice.mkdir('d1')), 'exists');
  await alice.mkdir('d1', { parents: true });
  assert.is(await codeOf(alice.mkdir('x/y')), 'not_found');
  await alice.mkdir('x/y/z', { parents: true });
  assert.equal(await names(alice, 'x'), ['d y']);
  await put(alice, 'd1/f.txt', Buffer.from('f'));
  assert.is(await codeOf(alice.remove('d1')), 'not_empty');
  await alice.remove('d1/f.txt');
  assert.equal(await names(alice, 'd1'), [], 'the folder stays, empty');
  await alice.remove('d1');
  assert.is(await alice.stat('d1'), null);
  assert.is(await codeOf(alice.remove('d1')), 'not_found');
  assert.is(await codeOf(alice.remove('')), 'invalid_path');
  assert.is(await codeOf(names(alice, 'nothing-here')), 'not_found');
  assert.is(await codeOf(names(alice, 'e.txt')), 'not_a_directory');
});

withStore('rename: a file is copied, checked, then deleted; empty folders move; full ones are refused clearly', async () => {
  await put(alice, 'r/a.txt', Buffer.from('alpha'), { parents: true, mtime: 1_700_000_000_000 });
  await alice.rename('r/a.txt', 'r/b.txt');
  assert.is(await alice.stat('r/a.txt'), null);
  assert.equal(await alice.stat('r/b.txt'), { name: 'b.txt', type: 'file', size: 5, mtime: 1_700_000_000_000 });
  assert.is(await alice.recordedSha256?.('r/b.txt'), sha('alpha'));
  await put(alice, 'r/c.txt', Buffer.from('gamma'));
  assert.is(await codeOf(alice.rename('r/b.txt', 'r/c.txt')), 'exists');
  await alice.rename('r/b.txt', 'r/c.txt', { overwrite: true });
  assert.is((await readAll(alice, 'r/c.txt')).toString(), 'alpha');
  assert.is(await codeOf(alice.rename('r/c.txt', 'nowhere/c.txt')), 'not_found');
  await alice.mkdir('empty');
  await alice.rename('empty', 'moved');
  assert.is((await alice.stat('moved'))?.type, 'dir');
  assert.is(await alice.stat('empty'), null);
  const refused = await alice.rename('r', 'r2').then(() => null, (e: FerryError) => e);
  assert.is(refused?.code, 'not_empty');
  assert.match(refused?.message ?? '', /object storage/);
  assert.is(await codeOf(alice.rename('moved', 'moved/inner')), 'invalid_path');
});

withStore('listing is paged, sorted, with folders; listTree walks everything; usage counts files', async () => {
  for (const n of ['p/c', 'p/a', 'p/e']) await put(alice, n, Buffer.from(n), { parents: true });
  await alice.mkdir('p/b');
  await alice.mkdir('p/d/deep', { parents: true });
  const pages: string[][] = [];
  for await (const page of alice.list('p', 2)) pages.push(page.map((e) => e.name));
  assert.ok(pages.every((p) => p.length <= 2), 'pages of at most 2');
  assert.equal(pages.flat().sort(), ['a', 'b', 'c', 'd', 'e']);
  const tree: string[] = [];
  for await (const page of alice.listTree('p')) tree.push(...page.map((e) => `${e.type === 'dir' ? 'd' : 'f'} ${e.name}`));
  assert.equal(tree.sort(), ['d b', 'd d', 'd d/deep', 'f a', 'f c', 'f e']);
  const usage = await alice.usage();
  assert.ok(usage.files >= 3 && usage.bytes >= 9);
});

withStore('confinement: bad paths are refused, and another user sees nothing of alice\'s', async () => {
  for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'a\\b', 'C:x', 'a\u0000b']) {
    assert.is(await codeOf(alice.stat(bad)), 'invalid_path', bad);
    assert.is(await codeOf(put(alice, bad, Buffer.from('x'))), 'invalid_path', bad);
  }
  const bob = driver.forUser('bob');
  assert.equal(await names(bob, ''), []);
  assert.is(await bob.stat('notes.txt'), null);
  await put(bob, 'mine.txt', Buffer.from('bob'));
  assert.ok(!(await names(alice, '')).includes('f mine.txt'));
  for (const bad of ['..', 'a/b', '', 'x\\y']) assert.throws(() => driver.forUser(bad));
  const keys = await allKeys(store as TestStore);
  assert.ok(keys.every((k) => k.startsWith(`${PREFIX}/homes/alice/`) || k.startsWith(`${PREFIX}/homes/bob/`)), keys.filter((k) => !k.startsWith(`${PREFIX}/homes/`)).join(', '));
});

withStore('the sweeper aborts multipart uploads older than the partial age', async () => {
  const s = store as TestStore;
  const before = (await openUploads(s)).length;
  await s.client.send(new CreateMultipartUploadCommand({ Bucket: s.bucket, Key: `${PREFIX}/homes/alice/abandoned.bin` }));
  assert.is((await openUploads(s)).length, before + 1);
  assert.is(await driver.sweepPartials(7 * 24 * 3600_000), 0, 'a young one stays');
  await new Promise((r) => setTimeout(r, 1100)); // the store gives the start time in whole seconds
  assert.is(await driver.sweepPartials(0), before + 1);
  assert.equal(await openUploads(s), []);
});

withStore('a store that is not there: one line at start, and unavailable (retryable) for requests', async () => {
  const s = store as TestStore;
  const missing = new S3Driver({ bucket: 'no-such-bucket-ferry', prefix: '' }, { endpoint: s.endpoint });
  await missing.check().then(
    () => assert.unreachable('a missing bucket passes the check'),
    (err: Error) => assert.match(err.message, /Bucket 'no-such-bucket-ferry' does not exist/),
  );
  missing.close();
  // A port nobody listens on (bound, then closed).
  const port = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
  const gone = new S3Driver({ bucket: s.bucket, prefix: PREFIX }, { endpoint: `http://127.0.0.1:${port}` });
  await gone.check().then(
    () => assert.unreachable('an unreachable endpoint passes the check'),
    (err: Error) => assert.match(err.message, /Cannot reach the object store/),
  );
  assert.is(await codeOf(gone.forUser('alice').stat('notes.txt')), 'unavailable');
  assert.is(await codeOf(put(gone.forUser('alice'), 'n.txt', Buffer.from('x'))), 'unavailable');
  gone.close();
  const prev = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  process.env.AWS_SECRET_ACCESS_KEY = 'wrong';
  try {
    const wrong = new S3Driver({ bucket: s.bucket, prefix: PREFIX }, { endpoint: s.endpoint });
    await wrong.check().then(
      () => assert.unreachable('wrong credentials pass the check'),
      (err: Error) => assert.match(err.message, /refused these credentials/),
    );
    wrong.close();
  } finally {
    process.env.AWS_SECRET_ACCESS_KEY = prev.secret;
  }
});

withStore('the store goes away in the middle of an upload: unavailable, nothing visible; back again, the upload goes through', async () => {
  const s = store as TestStore;
  const fwd = await startForwarder(s.endpoint);
  const flaky = new S3Driver({ bucket: s.bucket, prefix: PREFIX }, { endpoint: fwd.endpoint });
  try {
    const storage = flaky.forUser('alice');
    const bytes = randomBytes(3 * PART_SIZE);
    const up = await storage.createUpload('flaky.bin', { size: bytes.length });
    await up.write([bytes.subarray(0, PART_SIZE + 1)]); // the first part is on its way
    fwd.cut();
    const failed = await (async () => {
      try {
        await up.write([bytes.subarray(PART_SIZE + 1)]);
        await up.commit(sha(bytes));
        return 'ok';
      } catch (err) {
        return (err as FerryError).code;
      }
    })();
    assert.is(failed, 'unavailable');
    await up.abort(false);
    assert.is(await codeOf(storage.stat('flaky.bin')), 'unavailable', 'a request while the store is away');
    fwd.restore();
    assert.is(await alice.stat('flaky.bin'), null, 'nothing visible');
    assert.is((await put(storage, 'flaky.bin', bytes)).size, bytes.length);
    assert.ok((await readAll(alice, 'flaky.bin')).equals(bytes), 'the retried upload is whole');
    // An abort that could not reach the store leaves its multipart upload to the sweeper.
    await new Promise((r) => setTimeout(r, 1100));
    await driver.sweepPartials(0);
    assert.equal(await openUploads(s), []);
  } finally {
    flaky.close();
    await fwd.close();
  }
});

t.run();
