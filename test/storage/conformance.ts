/**
 * The storage conformance suite: what every driver must do the same way — each operation, its refusals and
 * their codes, verified commits that leave nothing visible on a mismatch, a second server's create refused at
 * commit, confinement to the user's home. Run against the local driver (test/storage/conformance-local.test.ts)
 * and the object store (test/s3/conformance-s3.test.ts). Where an object store differs by design (a folder that
 * holds files is not renamed), the case says so.
 */
import { createHash, randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { FerryError } from '../../src/core/errors.ts';
import type { Entry } from '../../src/core/types.ts';
import type { Storage, StorageDriver } from '../../src/storage/storage.ts';
import { testWhen } from '../skip.ts';

export interface Subject {
  /** The suite's name. */
  name: string;
  /** Why the driver cannot be tested here (skipped), or null. */
  missing(): string | null;
  /**
   * A fresh place for files; `second` is another server's driver on the same files, or null where a driver serves
   * its files from one server only (the local disk: one `ferry serve` per data directory).
   */
  open(): Promise<{ driver: StorageDriver; second: StorageDriver | null; close(): Promise<void> }>;
  /** An object store: a folder that holds files is refused a rename (docs/storage.md). */
  objectStore: boolean;
}

/** A size over one part of the object-store driver (8 MiB), so that the large case is a multipart upload there. */
const LARGE = 2 * 8 * 1024 * 1024 + 12_345;

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
export const codeOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (err: unknown) => (err as FerryError).code ?? String(err),
  );

export async function put(storage: Storage, path: string, bytes: Buffer, options: { overwrite?: boolean; parents?: boolean; mtime?: number; chunk?: number } = {}): Promise<Entry> {
  const up = await storage.createUpload(path, { size: bytes.length, ...options });
  const chunk = options.chunk ?? 1024 * 1024;
  for (let at = 0; at < bytes.length; at += chunk) await up.write([bytes.subarray(at, at + chunk)]);
  return up.commit(sha(bytes));
}

export async function readAll(storage: Storage, path: string): Promise<Buffer> {
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

export async function names(storage: Storage, path: string, pageSize?: number): Promise<string[]> {
  const out: string[] = [];
  for await (const page of storage.list(path, pageSize)) out.push(...page.map((e) => `${e.type === 'dir' ? 'd' : 'f'} ${e.name}`));
  return out;
}

export function conformance(subject: Subject): void {
  const t = suite(`storage conformance: ${subject.name}`);
  let place: Awaited<ReturnType<Subject['open']>> | null = null;
  let alice: Storage;

  t.before(async () => {
    if (subject.missing() !== null) return;
    place = await subject.open();
    alice = place.driver.forUser('alice');
  });
  t.after(async () => {
    await place?.close();
  });
  const test = (name: string, body: () => Promise<void>) => testWhen(t, subject.missing, name, body);

  test('a small file: its time kept exactly, listed, read back, stat equal to the commit', async () => {
    const bytes = Buffer.from('hello storage');
    const entry = await put(alice, 'notes.txt', bytes, { mtime: 1_796_228_384_741 });
    assert.equal(entry, { name: 'notes.txt', type: 'file', size: bytes.length, mtime: 1_796_228_384_741 });
    assert.equal(await alice.stat('notes.txt'), entry);
    assert.ok((await readAll(alice, 'notes.txt')).equals(bytes));
    const recorded = await alice.recordedSha256?.('notes.txt');
    if (recorded !== undefined && recorded !== null) assert.is(recorded, sha(bytes), 'a recorded digest is the right one');
    assert.ok((await names(alice, '')).includes('f notes.txt'));
  });

  test('a large file written in many pieces reads back whole, and from any offset', async () => {
    const bytes = randomBytes(LARGE);
    const entry = await put(alice, 'big/data.bin', bytes, { parents: true, chunk: 256 * 1024 });
    assert.is(entry.size, bytes.length);
    assert.ok((await readAll(alice, 'big/data.bin')).equals(bytes));
    const h = await alice.openRead('big/data.bin');
    const mid = Buffer.alloc(100_000);
    const at = 8 * 1024 * 1024 - 50_000;
    assert.is(await h.readInto(mid, at), 100_000);
    assert.ok(mid.equals(bytes.subarray(at, at + 100_000)));
    await h.close();
  });

  test('a digest or size mismatch leaves nothing visible', async () => {
    for (const size of [1000, LARGE]) {
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
      assert.is(await alice.stat(`long-${size}.bin`), null);
    }
  });

  test('a new upload of a file whose upload is still being put away (its connection dropped) waits for it and resumes from it, not busy', async () => {
    const bytes = randomBytes(LARGE);
    const cutAt = 8 * 1024 * 1024 + 6 * 1024 * 1024;
    const first = await alice.createUpload('waits/big.bin', { size: LARGE, parents: true, mtime: 1_760_000_000_000 });
    await first.write([bytes.subarray(0, cutAt)]);
    const stopping = first.abort(true); // not waited for: the client is back at once
    const again = await alice.createUpload('waits/big.bin', { size: LARGE, parents: true, mtime: 1_760_000_000_000, resume: true });
    await stopping;
    assert.ok(again.offset > 0 && again.offset <= cutAt, `resumed from what the first kept: offset ${again.offset}`);
    assert.is(again.prefixSha256, sha(bytes.subarray(0, again.offset)));
    // An upload in progress that is not ending is refused at once, as before.
    assert.is(await codeOf(alice.createUpload('waits/big.bin', { size: LARGE, parents: true, resume: true })), 'busy');
    await again.write([bytes.subarray(again.offset)]);
    await again.commit(sha(bytes));
    assert.ok((await readAll(alice, 'waits/big.bin')).equals(bytes));
  });

  test('resume: an upload cut off goes on from what is stored (verified by its SHA-256), here or on a second server; a differing prefix restarts', async () => {
    const bytes = randomBytes(LARGE);
    const cutAt = 8 * 1024 * 1024 + 6 * 1024 * 1024;
    const first = await alice.createUpload('resume/big.bin', { size: LARGE, parents: true, mtime: 1_760_000_000_000 });
    await first.write([bytes.subarray(0, cutAt)]);
    await first.abort(true);
    assert.is(await alice.stat('resume/big.bin'), null, 'nothing visible');
    const again = await alice.createUpload('resume/big.bin', { size: LARGE, parents: true, mtime: 1_760_000_000_000, resume: true });
    // What is kept is the driver's (every byte on disk; whole parts in an object store), never more than was sent.
    assert.ok(again.offset > 0 && again.offset <= cutAt, `offset ${again.offset}`);
    assert.is(again.prefixSha256, sha(bytes.subarray(0, again.offset)));
    assert.is(again.received, again.offset);
    await again.write([bytes.subarray(again.offset, cutAt + 1000)]);
    await again.abort(true);
    const second = (place as NonNullable<typeof place>).second;
    const next = await (second ?? place!.driver).forUser('alice').createUpload('resume/big.bin', { size: LARGE, parents: true, mtime: 1_760_000_000_000, resume: true });
    assert.ok(next.offset >= again.offset, `offset ${next.offset}`);
    assert.is(next.prefixSha256, sha(bytes.subarray(0, next.offset)));
    await next.write([bytes.subarray(next.offset)]);
    assert.equal(await next.commit(sha(bytes)), { name: 'big.bin', type: 'file', size: LARGE, mtime: 1_760_000_000_000 });
    assert.ok((await readAll(alice, 'resume/big.bin')).equals(bytes));
    const fresh = await alice.createUpload('resume/big.bin', { size: LARGE, resume: true, overwrite: true });
    assert.is(fresh.offset, 0, 'nothing left to resume once committed');
    await fresh.write([bytes.subarray(0, cutAt)]);
    await fresh.abort(true);
    const differs = await alice.createUpload('resume/big.bin', { size: LARGE, resume: true, overwrite: true });
    assert.ok(differs.offset > 0);
    await differs.restart();
    assert.is(differs.received, 0);
    const changed = randomBytes(LARGE);
    await differs.write([changed]);
    await differs.commit(sha(changed));
    assert.ok((await readAll(alice, 'resume/big.bin')).equals(changed));
  });

  test('a size, time, page size or read position that is not a number of its kind is a RangeError (a caller\'s bug), before anything is stored', async () => {
    const range = async (p: Promise<unknown>) => p.then(() => 'ok', (err: unknown) => (err instanceof RangeError ? 'RangeError' : String(err)));
    for (const size of [-1, 1.5, Number.NaN, 2 ** 60]) assert.is(await range(alice.createUpload('r.bin', { size })), 'RangeError', `size ${size}`);
    for (const mtime of [-5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.is(await range(alice.createUpload('r.bin', { size: 1, mtime })), 'RangeError', `mtime ${mtime}`);
      assert.is(await range(alice.putWhole('r.bin', Buffer.from('x'), { sha256: sha('x'), mtime })), 'RangeError', `putWhole mtime ${mtime}`);
    }
    assert.is(await range((async () => { for await (const _ of alice.list('', 0)); })()), 'RangeError', 'page size 0');
    await put(alice, 'r.txt', Buffer.from('read me'));
    const h = await alice.openRead('r.txt');
    try {
      for (const position of [-1, 0.5, Number.NaN]) {
        assert.is(await range(h.read(position, 2)), 'RangeError', `position ${position}`);
        assert.is(await range(h.readInto(Buffer.alloc(2), position)), 'RangeError', `readInto position ${position}`);
      }
      assert.is(await range(h.read(0, -2)), 'RangeError', 'length -2');
      assert.is((await h.read(0, 4)).toString(), 'read');
    } finally {
      await h.close();
    }
    assert.is(await alice.stat('r.bin'), null);
  });

  test('refusals: exists, overwrite, is_a_directory, missing parents, a file in the way', async () => {
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

  test('two uploads of one new file: one server refuses the second (busy); two servers, the second commit (exists)', async () => {
    const second = (place as NonNullable<typeof place>).second;
    for (const size of [100, LARGE]) {
      const open = await alice.createUpload(`one-${size}`, { size });
      assert.is(await codeOf(alice.createUpload(`one-${size}`, { size })), 'busy', 'the same server: busy while the first is open');
      await open.abort(false);
    }
    if (second === null) return;
    const other = second.forUser('alice');
    for (const size of [100, LARGE]) {
      const a = randomBytes(size);
      const b = randomBytes(size);
      const upA = await alice.createUpload(`race-${size}`, { size });
      const upB = await other.createUpload(`race-${size}`, { size });
      await upA.write([a]);
      await upB.write([b]);
      assert.is(await codeOf(upA.commit(sha(a))), 'ok');
      assert.is(await codeOf(upB.commit(sha(b))), 'exists', 'refused as it commits, not only as it starts');
      await upB.abort(false);
      assert.ok((await readAll(alice, `race-${size}`)).equals(a), `the first one, whole (${size} bytes)`);
    }
  });

  test('mkdir and remove: folders kept while empty, not_empty, not_found, not_a_directory', async () => {
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
    await put(alice, 'plain.txt', Buffer.from('p'));
    assert.is(await codeOf(names(alice, 'plain.txt')), 'not_a_directory');
  });

  test('rename: files (time and bytes kept, exists, overwrite), empty folders; a folder that holds files as the driver promises', async () => {
    await put(alice, 'r/a.txt', Buffer.from('alpha'), { parents: true, mtime: 1_700_000_000_000 });
    await alice.rename('r/a.txt', 'r/b.txt');
    assert.is(await alice.stat('r/a.txt'), null);
    assert.equal(await alice.stat('r/b.txt'), { name: 'b.txt', type: 'file', size: 5, mtime: 1_700_000_000_000 });
    await put(alice, 'r/c.txt', Buffer.from('gamma'));
    assert.is(await codeOf(alice.rename('r/b.txt', 'r/c.txt')), 'exists');
    await alice.rename('r/b.txt', 'r/c.txt', { overwrite: true });
    assert.is((await readAll(alice, 'r/c.txt')).toString(), 'alpha');
    assert.is(await codeOf(alice.rename('r/c.txt', 'nowhere/c.txt')), 'not_found');
    assert.is(await codeOf(alice.rename('nothing', 'elsewhere')), 'not_found');
    await alice.mkdir('empty');
    await alice.rename('empty', 'moved');
    assert.is((await alice.stat('moved'))?.type, 'dir');
    assert.is(await alice.stat('empty'), null);
    assert.is(await codeOf(alice.rename('moved', 'moved/inner')), 'invalid_path');
    if (subject.objectStore) {
      const refused = await alice.rename('r', 'r2').then(
        () => null,
        (e: FerryError) => e,
      );
      assert.is(refused?.code, 'not_empty');
      assert.match(refused?.message ?? '', /object storage/);
    } else {
      await alice.rename('r', 'r2');
      assert.is((await readAll(alice, 'r2/c.txt')).toString(), 'alpha');
    }
  });

  test('listing is paged and sorted with folders; listTree walks everything; usage counts files', async () => {
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
    assert.ok(usage.files >= 3 && usage.bytes >= 9, JSON.stringify(usage));
  });

  test('confinement: bad paths are refused everywhere, and another user sees nothing of alice\'s', async () => {
    for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'a\\b', 'C:x', 'a\u0000b']) {
      assert.is(await codeOf(alice.stat(bad)), 'invalid_path', bad);
      assert.is(await codeOf(put(alice, bad, Buffer.from('x'))), 'invalid_path', bad);
      assert.is(await codeOf(alice.mkdir(bad)), 'invalid_path', bad);
      assert.is(await codeOf(alice.remove(bad)), 'invalid_path', bad);
      assert.is(await codeOf(alice.rename('notes.txt', bad)), 'invalid_path', bad);
    }
    const driver = (place as NonNullable<typeof place>).driver;
    const bob = driver.forUser('bob');
    assert.is(await bob.stat('notes.txt'), null);
    await put(bob, 'mine.txt', Buffer.from('bob'));
    assert.ok(!(await names(alice, '')).includes('f mine.txt'));
    assert.equal(await names(bob, ''), ['f mine.txt']);
    for (const bad of ['..', 'a/b', '', 'x\\y']) assert.throws(() => driver.forUser(bad));
  });

  t.run();
}
