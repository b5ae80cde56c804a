// What only the s3 driver has, against a real object store (OpenStack Swift with s3api, started by
// scripts/services/swift.sh): the key layout, digests and times in metadata, no multipart upload left open,
// the sweeper, and a store that is missing, unreachable or goes away mid-upload. What every driver shares is
// in the conformance suite (test/s3/conformance-s3.test.ts).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CreateMultipartUploadCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import type { FerryError } from '../../src/core/errors.ts';
import { S3Driver } from '../../src/storage/s3/mod.ts';
import { codeOf, put, readAll } from '../storage/conformance.ts';
import { PART_SIZE } from '../../src/storage/s3/upload.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { allKeys, closeStore, openStore, withStore as withStoreIn, openUploads, startForwarder, storeMissing, type TestStore } from './store.ts';

const t = suite('s3 storage');
const PREFIX = 'srv/one';
let store: TestStore | null = null;
let driver: S3Driver;
let alice: Storage;

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

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

withStore('a small file carries its SHA-256 and time in metadata, under its key', async () => {
  const bytes = Buffer.from('hello object store');
  await put(alice, 'notes.txt', bytes, { mtime: 1_796_228_384_741 });
  assert.is(await alice.recordedSha256?.('notes.txt'), sha(bytes));
  assert.ok((await allKeys(store as TestStore)).includes(`${PREFIX}/homes/alice/notes.txt`));
});

withStore('no multipart upload is left open after a commit, a mismatch or an abort', async () => {
  const bytes = randomBytes(2 * PART_SIZE + 12_345);
  await put(alice, 'big.bin', bytes, { chunk: 256 * 1024 });
  const bad = await alice.createUpload('bad.bin', { size: bytes.length });
  await bad.write([bytes]);
  assert.is(await codeOf(bad.commit(sha('other'))), 'digest_mismatch');
  await bad.abort(false);
  const dropped = await alice.createUpload('dropped.bin', { size: bytes.length });
  await dropped.write([bytes.subarray(0, PART_SIZE + 10)]);
  await dropped.abort(true);
  assert.equal(await openUploads(store as TestStore), []);
  assert.is(await alice.recordedSha256?.('big.bin'), null, 'a multipart object has no digest in metadata (STAT --sha256 reads it)');
});

withStore('rename copies the file with its recorded SHA-256 and time, then deletes the original', async () => {
  await put(alice, 'r/a.txt', Buffer.from('alpha'), { parents: true, mtime: 1_700_000_000_000 });
  await alice.rename('r/a.txt', 'r/b.txt');
  assert.is(await alice.recordedSha256?.('r/b.txt'), sha('alpha'));
  assert.equal(await alice.stat('r/b.txt'), { name: 'b.txt', type: 'file', size: 5, mtime: 1_700_000_000_000 });
  const keys = await allKeys(store as TestStore, `${PREFIX}/homes/alice/r/`);
  assert.equal(keys.sort(), [`${PREFIX}/homes/alice/r/`, `${PREFIX}/homes/alice/r/b.txt`]);
});

withStore('every key the driver writes is under <prefix>/homes/<user>/', async () => {
  const bob = driver.forUser('bob');
  await put(bob, 'mine.txt', Buffer.from('bob'));
  const keys = await allKeys(store as TestStore);
  assert.ok(keys.length > 0);
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
