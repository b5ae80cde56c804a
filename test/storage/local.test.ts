import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { FerryError } from '../../src/core/errors.ts';
import type { Entry } from '../../src/core/types.ts';
import { LocalDiskDriver, canPinDirectories } from '../../src/storage/local/mod.ts';
import { NameLocks, Partials } from '../../src/storage/local/partials.ts';
import type { Storage, UploadOptions } from '../../src/storage/storage.ts';
import { skip } from '../skip.ts';

interface Ctx {
  root: string;
  data: string;
  outside: string;
  home: string;
  partials: string;
  driver: LocalDiskDriver;
  storage: Storage;
}

const sha = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

async function setup(ctx: Ctx): Promise<void> {
  ctx.root = await mkdtemp(join(tmpdir(), 'ferry-storage-'));
  ctx.data = join(ctx.root, 'data');
  ctx.outside = join(ctx.root, 'outside');
  await mkdir(ctx.outside);
  await writeFile(join(ctx.outside, 'secret.txt'), 'top secret');
  ctx.driver = new LocalDiskDriver(ctx.data);
  ctx.storage = ctx.driver.forUser('alice');
  ctx.home = join(ctx.data, 'homes', 'alice');
  ctx.partials = join(ctx.data, '.partial', 'alice');
  await ctx.storage.usage(); // creates the home
}

async function teardown(ctx: Ctx): Promise<void> {
  await rm(ctx.root, { recursive: true, force: true });
}

/** Awaits `promise` and asserts it rejects with a FerryError of `code` (and a message matching `message`). */
async function rejects(promise: Promise<unknown>, code: string, message?: RegExp): Promise<FerryError> {
  try {
    await promise;
  } catch (err) {
    if (!(err instanceof FerryError)) throw err;
    assert.is(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    if (message) assert.match(err.message, message);
    return err;
  }
  throw new assert.Assertion({ message: `expected a rejection with ${code}`, operator: 'rejects', expects: code, actual: 'resolved' });
}

async function put(storage: Storage, path: string, data: Buffer | string, options: Partial<UploadOptions> = {}): Promise<Entry> {
  const bytes = Buffer.from(data);
  const upload = await storage.createUpload(path, { size: bytes.length, ...options });
  await upload.write([bytes]);
  return upload.commit(sha(bytes));
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function collect(iterable: AsyncIterable<Entry[]>): Promise<Entry[][]> {
  const pages: Entry[][] = [];
  for await (const page of iterable) pages.push(page);
  return pages;
}

// ---------------------------------------------------------------------------------------------------------

const uploads = suite<Ctx>('uploads');
uploads.before.each(setup);
uploads.after.each(teardown);

uploads('an upload becomes visible only when committed', async (ctx) => {
  const data = randomBytes(10_000);
  const upload = await ctx.storage.createUpload('a.bin', { size: data.length });
  assert.is(upload.offset, 0);
  assert.is(upload.prefixSha256, sha(''));
  await upload.write([data.subarray(0, 4000), data.subarray(4000)]);
  assert.is(upload.received, 10_000);
  assert.is(await ctx.storage.stat('a.bin'), null);
  assert.is(await exists(join(ctx.home, 'a.bin')), false);
  const entry = await upload.commit(sha(data));
  assert.equal({ ...entry, mtime: 0 }, { name: 'a.bin', type: 'file', size: 10_000, mtime: 0 });
  assert.ok((await readFile(join(ctx.home, 'a.bin'))).equals(data));
  assert.equal(await readdir(ctx.partials), [], 'partial and sidecar are gone');
});

uploads('an aborted upload leaves nothing, neither in the home nor as a partial', async (ctx) => {
  const upload = await ctx.storage.createUpload('gone.txt', { size: 5 });
  await upload.write([Buffer.from('hel')]);
  await upload.abort(false);
  assert.is(await ctx.storage.stat('gone.txt'), null);
  assert.equal(await readdir(ctx.partials), []);
});

uploads('a digest mismatch is refused, shows nothing and deletes the partial', async (ctx) => {
  const upload = await ctx.storage.createUpload('bad.txt', { size: 5 });
  await upload.write([Buffer.from('hello')]);
  await rejects(upload.commit(sha('jello')), 'digest_mismatch', /'bad\.txt'/);
  assert.is(await ctx.storage.stat('bad.txt'), null);
  assert.equal(await readdir(ctx.partials), []);
  // The lock is released: the same path can be uploaded again.
  await put(ctx.storage, 'bad.txt', 'hello');
});

uploads('more bytes than declared is a size mismatch', async (ctx) => {
  const upload = await ctx.storage.createUpload('big.txt', { size: 4 });
  await upload.write([Buffer.from('abc')]);
  await rejects(upload.write([Buffer.from('de')]), 'size_mismatch');
  assert.is(upload.received, 3);
  await upload.abort(false);
});

uploads('committing fewer bytes than declared is a size mismatch and deletes the partial', async (ctx) => {
  const upload = await ctx.storage.createUpload('short.txt', { size: 10 });
  await upload.write([Buffer.from('abc')]);
  await rejects(upload.commit(sha('abc')), 'size_mismatch');
  assert.is(await ctx.storage.stat('short.txt'), null);
  assert.equal(await readdir(ctx.partials), []);
});

uploads('an empty file can be uploaded', async (ctx) => {
  const entry = await put(ctx.storage, 'empty', '');
  assert.is(entry.size, 0);
  assert.is((await readFile(join(ctx.home, 'empty'))).length, 0);
});

uploads('resume continues from the kept partial with the prefix hash, and the result is byte-identical', async (ctx) => {
  const data = randomBytes(200_001);
  const half = 100_000;
  const first = await ctx.storage.createUpload('dir/r.bin', { size: data.length, parents: true });
  await first.write([data.subarray(0, half)]);
  await first.abort(true);
  assert.is(await ctx.storage.stat('dir/r.bin'), null);

  const second = await ctx.storage.createUpload('dir/r.bin', { size: data.length, parents: true, resume: true });
  assert.is(second.offset, half);
  assert.is(second.received, half);
  assert.is(second.prefixSha256, sha(data.subarray(0, half)));
  await second.write([data.subarray(half)]);
  await second.commit(sha(data));
  assert.ok((await readFile(join(ctx.home, 'dir', 'r.bin'))).equals(data));
  assert.equal(await readdir(ctx.partials), []);
});

uploads('resume with a different declared size starts at 0', async (ctx) => {
  const first = await ctx.storage.createUpload('r.bin', { size: 100 });
  await first.write([Buffer.alloc(50, 1)]);
  await first.abort(true);
  const second = await ctx.storage.createUpload('r.bin', { size: 101, resume: true });
  assert.is(second.offset, 0);
  assert.is(second.prefixSha256, sha(''));
  await second.abort(false);
});

uploads('resume truncates a partial longer than the declared size', async (ctx) => {
  const data = randomBytes(100);
  await mkdir(ctx.partials, { recursive: true });
  await writeFile(join(ctx.partials, `${sha('t.bin')}-100.part`), Buffer.concat([data, randomBytes(50)]));
  const upload = await ctx.storage.createUpload('t.bin', { size: 100, resume: true });
  assert.is(upload.offset, 100);
  assert.is(upload.prefixSha256, sha(data));
  await upload.commit(sha(data));
  assert.ok((await readFile(join(ctx.home, 't.bin'))).equals(data));
});

uploads('without resume a kept partial is discarded', async (ctx) => {
  const first = await ctx.storage.createUpload('r.bin', { size: 100 });
  await first.write([Buffer.alloc(50, 1)]);
  await first.abort(true);
  const second = await ctx.storage.createUpload('r.bin', { size: 100 });
  assert.is(second.offset, 0);
  const data = Buffer.alloc(100, 2);
  await second.write([data]);
  await second.commit(sha(data));
  assert.ok((await readFile(join(ctx.home, 'r.bin'))).equals(data));
});

uploads('restart drops the partial bytes and starts from 0', async (ctx) => {
  const first = await ctx.storage.createUpload('r.bin', { size: 6 });
  await first.write([Buffer.from('xyz')]);
  await first.abort(true);
  const second = await ctx.storage.createUpload('r.bin', { size: 6, resume: true });
  assert.is(second.offset, 3);
  await second.restart();
  assert.is(second.offset, 0);
  assert.is(second.received, 0);
  assert.is(second.prefixSha256, sha(''));
  await second.write([Buffer.from('abcdef')]);
  await second.commit(sha('abcdef'));
  assert.is(await readFile(join(ctx.home, 'r.bin'), 'utf8'), 'abcdef');
});

uploads('an existing target is refused without overwrite, up front and at commit', async (ctx) => {
  await put(ctx.storage, 'x.txt', 'one');
  await rejects(ctx.storage.createUpload('x.txt', { size: 3 }), 'exists', /'x\.txt'/);

  const upload = await ctx.storage.createUpload('y.txt', { size: 3 });
  await upload.write([Buffer.from('new')]);
  await writeFile(join(ctx.home, 'y.txt'), 'raced'); // appears while the upload runs
  await rejects(upload.commit(sha('new')), 'exists');
  assert.is(await readFile(join(ctx.home, 'y.txt'), 'utf8'), 'raced');
});

uploads('what changes between the start of an upload and its commit is checked at commit (worker and thread-pool paths)', async (ctx) => {
  for (const smallCommits of [true, false]) {
    const storage = new LocalDiskDriver(ctx.data, { smallCommits }).forUser('alice');
    const mode = `smallCommits ${smallCommits}`;
    const start = async (path: string, options: Partial<UploadOptions> = {}) => {
      const upload = await storage.createUpload(path, { size: 3, ...options });
      await upload.write([Buffer.from('new')]);
      return upload;
    };
    // The target becomes a symlink leading out of the home: refused, nothing written through it.
    await writeFile(join(ctx.home, 'a.txt'), 'old');
    let upload = await start('a.txt', { overwrite: true });
    await rm(join(ctx.home, 'a.txt'));
    await symlink(join(ctx.outside, 'secret.txt'), join(ctx.home, 'a.txt'));
    await rejects(upload.commit(sha('new')), 'invalid_path', /leaves your home/);
    assert.is(await readFile(join(ctx.outside, 'secret.txt'), 'utf8'), 'top secret', mode);
    await rm(join(ctx.home, 'a.txt'));
    // The target becomes a directory.
    upload = await start('b.txt', { overwrite: true });
    await mkdir(join(ctx.home, 'b.txt'));
    await rejects(upload.commit(sha('new')), 'is_a_directory');
    await rm(join(ctx.home, 'b.txt'), { recursive: true });
    // The directory is swapped for a symlink leading out of the home.
    await mkdir(join(ctx.home, 'd'));
    upload = await start('d/c.txt');
    await rm(join(ctx.home, 'd'), { recursive: true });
    await symlink(ctx.outside, join(ctx.home, 'd'));
    await rejects(upload.commit(sha('new')), 'invalid_path', /leaves your home/);
    assert.equal(await readdir(ctx.outside), ['secret.txt'], mode);
    await rm(join(ctx.home, 'd'));
    // The directory goes away: not_found, or made again with parents.
    await mkdir(join(ctx.home, 'e'));
    upload = await start('e/c.txt');
    await rm(join(ctx.home, 'e'), { recursive: true });
    await rejects(upload.commit(sha('new')), 'not_found');
    await mkdir(join(ctx.home, 'e'));
    upload = await start('e/c.txt', { parents: true });
    await rm(join(ctx.home, 'e'), { recursive: true });
    const entry = await upload.commit(sha('new'));
    assert.equal([entry.name, entry.size], ['c.txt', 3], mode);
    assert.is(await readFile(join(ctx.home, 'e', 'c.txt'), 'utf8'), 'new', mode);
    await rm(join(ctx.home, 'e'), { recursive: true });
    // Nothing is left where clients look; verified partials of failed commits stay for a resume, as documented.
    assert.equal(await readdir(ctx.home), [], mode);
    await rm(ctx.partials, { recursive: true, force: true });
  }
});

uploads('a large upload written in pieces: right digest commits, a damaged byte is refused, restart starts over', async (ctx) => {
  {
    const storage = ctx.storage;
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const send = async (path: string, bytes: Buffer, digest: string) => {
      const up = await storage.createUpload(path, { size: bytes.length, overwrite: true });
      for (let at = 0; at < bytes.length; at += 700_000) await up.write([bytes.subarray(at, at + 300_000), bytes.subarray(at + 300_000, at + 700_000)]);
      return up.commit(digest);
    };
    const entry = await send('big.bin', data, sha(data));
    assert.is(entry.size, data.length);
    assert.ok((await readFile(join(ctx.home, 'big.bin'))).equals(data), 'stored intact');
    const damaged = Buffer.from(data);
    damaged[2_000_000] = (damaged[2_000_000] as number) ^ 1;
    await rejects(send('bad.bin', damaged, sha(data)), 'digest_mismatch');
    assert.not.ok(await exists(join(ctx.home, 'bad.bin')));
    const up = await storage.createUpload('again.bin', { size: data.length, overwrite: true });
    await up.write([randomBytes(1_500_000)]);
    await up.restart();
    await up.write([data]);
    await up.commit(sha(data));
    assert.ok((await readFile(join(ctx.home, 'again.bin'))).equals(data), 'after a restart');
  }
});

uploads('overwrite replaces the target atomically', async (ctx) => {
  await put(ctx.storage, 'x.txt', 'one');
  await put(ctx.storage, 'x.txt', 'second', { overwrite: true });
  assert.is(await readFile(join(ctx.home, 'x.txt'), 'utf8'), 'second');
});

uploads('uploading onto a directory is refused', async (ctx) => {
  await ctx.storage.mkdir('d');
  await rejects(ctx.storage.createUpload('d', { size: 1, overwrite: true }), 'is_a_directory');
  await rejects(ctx.storage.createUpload('', { size: 1 }), 'is_a_directory');
});

uploads('missing parents are not_found without parents and created with parents', async (ctx) => {
  await rejects(ctx.storage.createUpload('p/q/r.txt', { size: 1 }), 'not_found', /'p'/);
  await put(ctx.storage, 'p/q/r.txt', 'r', { parents: true });
  assert.is(await readFile(join(ctx.home, 'p', 'q', 'r.txt'), 'utf8'), 'r');
  assert.ok((await stat(join(ctx.home, 'p', 'q'))).isDirectory());
});

uploads('a parent that is a file is not a directory', async (ctx) => {
  await put(ctx.storage, 'f', 'x');
  await rejects(ctx.storage.createUpload('f/g.txt', { size: 1 }), 'not_a_directory');
  await rejects(ctx.storage.createUpload('f/g/h.txt', { size: 1, parents: true }), 'not_a_directory');
});

uploads('a second upload of the same path while one is open is busy', async (ctx) => {
  const first = await ctx.storage.createUpload('same.txt', { size: 2 });
  await rejects(ctx.storage.createUpload('same.txt', { size: 2 }), 'busy');
  await rejects(ctx.driver.forUser('alice').createUpload('./same.txt', { size: 9 }), 'busy');
  await first.abort(false);
  const again = await ctx.storage.createUpload('same.txt', { size: 2 });
  await again.abort(false);
});

uploads('another user may upload the same path at the same time', async (ctx) => {
  const first = await ctx.storage.createUpload('same.txt', { size: 2 });
  const bob = await ctx.driver.forUser('bob').createUpload('same.txt', { size: 2 });
  await first.abort(false);
  await bob.abort(false);
});

uploads('the declared mtime is set on the committed file', async (ctx) => {
  const mtime = Date.UTC(2020, 0, 2, 3, 4, 5);
  const entry = await put(ctx.storage, 'old.txt', 'old', { mtime });
  assert.is(entry.mtime, mtime);
  assert.is((await stat(join(ctx.home, 'old.txt'))).mtimeMs, mtime);
});

uploads('the home is created with mode 0700 and partials live outside it', async (ctx) => {
  assert.is((await stat(ctx.home)).mode & 0o777, 0o700);
  const upload = await ctx.storage.createUpload('p.txt', { size: 3, resume: true });
  await upload.write([Buffer.from('abc')]);
  const names = await readdir(ctx.partials);
  assert.is(names.length, 2);
  const sidecar = names.find((n) => n.endsWith('.json')) ?? '';
  const meta = JSON.parse(await readFile(join(ctx.partials, sidecar), 'utf8')) as Record<string, unknown>;
  assert.is(meta.path, 'p.txt');
  assert.is(meta.size, 3);
  assert.type(meta.created, 'number');
  assert.ok(names.some((n) => n === `${sha('p.txt')}-3.part`));
  await upload.abort(false);
});

uploads('sweepPartials removes old partials and their sidecars but not new or active ones', async (ctx) => {
  const old = await ctx.storage.createUpload('old.bin', { size: 10 });
  await old.write([Buffer.from('12345')]);
  await old.abort(true);
  const fresh = await ctx.storage.createUpload('fresh.bin', { size: 10 });
  await fresh.write([Buffer.from('12345')]);
  await fresh.abort(true);
  const active = await ctx.storage.createUpload('active.bin', { size: 10 });

  const longAgo = new Date(Date.now() - 3 * 24 * 3600_000);
  for (const name of await readdir(ctx.partials)) {
    if (!name.startsWith(sha('fresh.bin'))) await utimes(join(ctx.partials, name), longAgo, longAgo);
  }
  assert.is(await ctx.driver.sweepPartials(24 * 3600_000), 1);
  const left = (await readdir(ctx.partials)).sort();
  // A small upload still running has no sidecar yet (pinned: nothing on the disk at all, it is held in memory
  // until it commits); the ones that stopped and kept their partial have one.
  const running = (await canPinDirectories()) ? [] : [`${sha('active.bin')}-10.part`];
  assert.equal(left, [...running, `${sha('fresh.bin')}-10.json`, `${sha('fresh.bin')}-10.part`].sort());
  await active.write([Buffer.alloc(10)]);
  await active.commit(sha(Buffer.alloc(10)));
});

uploads('a small upload writes its sidecar only when it stops and keeps its partial; a large one as it starts', async (ctx) => {
  const small = await ctx.storage.createUpload('small.bin', { size: 10 });
  await small.write([Buffer.from('12345')]);
  // Pinned, a small upload is held in memory until it commits or stops (one hop to a worker then).
  assert.equal(await readdir(ctx.partials), (await canPinDirectories()) ? [] : [`${sha('small.bin')}-10.part`]);
  await small.abort(true);
  assert.is(await readFile(join(ctx.partials, `${sha('small.bin')}-10.part`), 'utf8'), '12345', 'kept: the bytes received');
  assert.equal((await readdir(ctx.partials)).sort(), [`${sha('small.bin')}-10.json`, `${sha('small.bin')}-10.part`]);
  const meta = JSON.parse(await readFile(join(ctx.partials, `${sha('small.bin')}-10.json`), 'utf8')) as Record<string, unknown>;
  assert.equal([meta.path, meta.size], ['small.bin', 10]);
  const big = await ctx.storage.createUpload('big.bin', { size: 2 << 20 });
  assert.ok((await readdir(ctx.partials)).includes(`${sha('big.bin')}-${2 << 20}.json`), 'large upload: sidecar from the start');
  await big.abort(false);
  assert.not.ok((await readdir(ctx.partials)).some((n) => n.startsWith(sha('big.bin'))), 'aborted: partial and sidecar gone');
  // A committed small upload leaves nothing behind.
  const done = await ctx.storage.createUpload('done.bin', { size: 3 });
  await done.write([Buffer.from('abc')]);
  await done.commit(sha(Buffer.from('abc')));
  assert.not.ok((await readdir(ctx.partials)).some((n) => n.startsWith(sha('done.bin'))));
});

uploads('an upload tells what it replaces and whether it creates parent directories', async (ctx) => {
  await put(ctx.storage, 'have.txt', 'four');
  const over = await ctx.storage.createUpload('have.txt', { size: 1, overwrite: true });
  assert.equal([over.replaces?.type, over.replaces?.size, over.createsParents], ['file', 4, false]);
  await over.abort(false);
  const fresh = await ctx.storage.createUpload('new/deep/x.txt', { size: 1, parents: true });
  assert.equal([fresh.replaces, fresh.createsParents], [null, true]);
  await fresh.abort(false);
});

uploads('sweepPartials on a data dir without partials removes nothing', async () => {
  const root = await mkdtemp(join(tmpdir(), 'ferry-storage-'));
  try {
    assert.is(await new LocalDiskDriver(join(root, 'none')).sweepPartials(0), 0);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

uploads.run();

// ---------------------------------------------------------------------------------------------------------

const reading = suite<Ctx>('reading and stat');
reading.before.each(setup);
reading.after.each(teardown);

reading('openRead reads ranges into fresh buffers and an empty buffer at the end', async (ctx) => {
  await put(ctx.storage, 'r.txt', '0123456789');
  const handle = await ctx.storage.openRead('r.txt');
  assert.is(handle.size, 10);
  const a = await handle.read(0, 4);
  const b = await handle.read(4, 100);
  assert.is(a.toString(), '0123');
  assert.is(b.toString(), '456789');
  assert.is(b.length, 6);
  assert.is((await handle.read(10, 5)).length, 0);
  assert.is(a.toString(), '0123', 'an earlier buffer is not reused');
  await handle.close();
});

reading('readInto fills the given buffer up to the size the file had when opened, 0 at the end', async (ctx) => {
  await put(ctx.storage, 'r.txt', '0123456789');
  const handle = await ctx.storage.openRead('r.txt');
  const target = Buffer.alloc(4, 0x2e);
  assert.is(await handle.readInto(target, 0), 4);
  assert.is(target.toString(), '0123');
  assert.is(await handle.readInto(target, 8), 2);
  assert.is(target.toString(), '89' + '23', 'only the bytes read are overwritten');
  assert.is(await handle.readInto(target, 10), 0);
  await appendFile(join(ctx.home, 'r.txt'), 'abcdef');
  assert.is(await handle.readInto(Buffer.alloc(8), 8), 2, 'a file grown behind the handle is read to its size at open');
  await handle.close();
});

reading('openRead of a directory, the home or a missing file is refused', async (ctx) => {
  await ctx.storage.mkdir('d');
  await rejects(ctx.storage.openRead('d'), 'is_a_directory');
  await rejects(ctx.storage.openRead(''), 'is_a_directory');
  const err = await rejects(ctx.storage.openRead('nope.txt'), 'not_found', /^Cannot read 'nope\.txt': no such file/);
  assert.not.match(err.message, new RegExp(ctx.root));
});

reading('stat describes files, directories and the home, and is null for nothing', async (ctx) => {
  await put(ctx.storage, 'd/f.txt', 'abc', { parents: true });
  assert.equal({ ...(await ctx.storage.stat('d/f.txt')), mtime: 0 }, { name: 'f.txt', type: 'file', size: 3, mtime: 0 });
  assert.equal({ ...(await ctx.storage.stat('d')), mtime: 0 }, { name: 'd', type: 'dir', size: 0, mtime: 0 });
  assert.is((await ctx.storage.stat(''))?.type, 'dir');
  assert.is((await ctx.storage.stat('.'))?.type, 'dir');
  assert.is(await ctx.storage.stat('d/none'), null);
  assert.is(await ctx.storage.stat('d/f.txt/under'), null);
});

reading('operations refuse invalid paths before touching the disk', async (ctx) => {
  await rejects(ctx.storage.stat('../alice'), 'invalid_path');
  await rejects(ctx.storage.openRead('/etc/passwd'), 'invalid_path');
  await rejects(ctx.storage.createUpload('../bob/x', { size: 1 }), 'invalid_path');
  await rejects(collect(ctx.storage.list('..')), 'invalid_path');
  await rejects(ctx.storage.remove('a\u0000b'), 'invalid_path');
  await rejects(ctx.storage.mkdir('a\\b'), 'invalid_path');
  await rejects(ctx.storage.rename('a', '../b'), 'invalid_path');
});

reading('NFD and NFC names reach the same file', async (ctx) => {
  await put(ctx.storage, 'caf\u00e9.txt', 'x');
  assert.is((await ctx.storage.stat('cafe\u0301.txt'))?.size, 1);
});

reading('a FIFO planted in the home is not opened, listed or counted (and does not hang)', async (ctx) => {
  const made = spawnSync('mkfifo', [join(ctx.home, 'pipe')]);
  if (made.status !== 0) return skip('no mkfifo on this system');
  await rejects(ctx.storage.openRead('pipe'), 'not_found', /not a regular file/);
  assert.is(await ctx.storage.stat('pipe'), null);
  assert.equal(await collect(ctx.storage.list('')), []);
  assert.equal(await ctx.storage.usage(), { bytes: 0, files: 0 });
});

reading.run();

// ---------------------------------------------------------------------------------------------------------

const listing = suite<Ctx>('list');
listing.before.each(setup);
listing.after.each(teardown);

listing('a 3,000-entry directory comes in pages of 1000, sorted within each page, with correct totals', async (ctx) => {
  const dir = join(ctx.home, 'many');
  await mkdir(dir);
  const files = 2999;
  for (let i = 0; i < files; i += 200) {
    const names = Array.from({ length: Math.min(200, files - i) }, (_, j) => i + j);
    await Promise.all(names.map((n) => writeFile(join(dir, `f${String(n).padStart(5, '0')}`), 'x'.repeat(n % 7))));
  }
  await mkdir(join(dir, 'sub'));
  const pages = await collect(ctx.storage.list('many', 1000));
  assert.equal(
    pages.map((p) => p.length),
    [1000, 1000, 1000],
  );
  const all = pages.flat();
  assert.is(new Set(all.map((e) => e.name)).size, 3000);
  for (const page of pages) {
    const names = page.map((e) => e.name);
    assert.equal(names, [...names].sort());
  }
  const expected = Array.from({ length: files }, (_, i) => i % 7).reduce((a, b) => a + b, 0);
  assert.is(all.filter((e) => e.type === 'file').reduce((n, e) => n + e.size, 0), expected);
  assert.is(all.filter((e) => e.type === 'file').length, files);
  const sub = all.find((e) => e.name === 'sub');
  assert.is(sub?.type, 'dir');
  assert.is(sub?.size, 0);
});

listing('the default page size is 1000 and an empty directory yields no page', async (ctx) => {
  await ctx.storage.mkdir('empty');
  assert.equal(await collect(ctx.storage.list('empty')), []);
  await put(ctx.storage, 'one', '1');
  const pages = await collect(ctx.storage.list(''));
  assert.equal(
    pages.flat().map((e) => e.name),
    ['empty', 'one'],
  );
});

listing('breaking out of a listing early is fine', async (ctx) => {
  for (let i = 0; i < 10; i++) await writeFile(join(ctx.home, `f${i}`), '');
  let seen = 0;
  for await (const page of ctx.storage.list('', 3)) {
    seen += page.length;
    break;
  }
  assert.is(seen, 3);
});

listing('listing a file is not_a_directory and a missing directory not_found', async (ctx) => {
  await put(ctx.storage, 'f', 'x');
  await rejects(collect(ctx.storage.list('f')), 'not_a_directory');
  await rejects(collect(ctx.storage.list('nope')), 'not_found');
});

listing('names a client cannot send are left out', async (ctx) => {
  await writeFile(join(ctx.home, 'back\\slash'), '');
  await writeFile(join(ctx.home, 'line\nbreak'), '');
  await writeFile(join(ctx.home, 'ok'), '');
  const names = (await collect(ctx.storage.list(''))).flat().map((e) => e.name);
  assert.equal(names, ['ok']);
});

listing.run();

// ---------------------------------------------------------------------------------------------------------

const links = suite<Ctx>('symlinks');
links.before.each(setup);
links.after.each(teardown);

links('a directory symlink leading out of the home is refused for read, upload, list and stat', async (ctx) => {
  await symlink(ctx.outside, join(ctx.home, 'link'));
  await rejects(ctx.storage.openRead('link/secret.txt'), 'invalid_path', /leaves your home/);
  await rejects(ctx.storage.createUpload('link/x', { size: 1 }), 'invalid_path', /leaves your home/);
  await rejects(ctx.storage.createUpload('link/deeper/x', { size: 1, parents: true }), 'invalid_path');
  await rejects(collect(ctx.storage.list('link')), 'invalid_path');
  await rejects(ctx.storage.stat('link'), 'invalid_path');
  await rejects(ctx.storage.stat('link/secret.txt'), 'invalid_path');
  await rejects(ctx.storage.mkdir('link/new'), 'invalid_path');
  await rejects(ctx.storage.mkdir('link/new', { parents: true }), 'invalid_path');
  await rejects(ctx.storage.remove('link/secret.txt'), 'invalid_path');
  await rejects(ctx.storage.rename('link/secret.txt', 'stolen.txt'), 'invalid_path');
  await rejects(ctx.storage.rename('link', 'moved'), 'invalid_path');
  await rejects(ctx.storage.remove('link'), 'invalid_path');
  assert.equal(await readdir(ctx.outside), ['secret.txt'], 'nothing was written outside');
  assert.is(await readFile(join(ctx.outside, 'secret.txt'), 'utf8'), 'top secret');
});

links('a symlink to /etc is refused', async (ctx) => {
  await symlink('/etc', join(ctx.home, 'etc'));
  await rejects(ctx.storage.openRead('etc/passwd'), 'invalid_path');
  await rejects(collect(ctx.storage.list('etc')), 'invalid_path');
  await rejects(ctx.storage.createUpload('etc/ferry-test', { size: 1, overwrite: true }), 'invalid_path');
});

links('symlinks leading out of the home, and dangling ones, are left out of the parent listing', async (ctx) => {
  await symlink(ctx.outside, join(ctx.home, 'link'));
  await symlink(join(ctx.outside, 'secret.txt'), join(ctx.home, 'secret-link'));
  await symlink(join(ctx.home, 'nowhere'), join(ctx.home, 'dangling'));
  await writeFile(join(ctx.home, 'plain.txt'), 'p');
  const names = (await collect(ctx.storage.list(''))).flat().map((e) => e.name);
  assert.equal(names, ['plain.txt']);
});

links('a file symlink leading out of the home is refused for openRead and for overwrite', async (ctx) => {
  await symlink(join(ctx.outside, 'secret.txt'), join(ctx.home, 'secret.txt'));
  await rejects(ctx.storage.openRead('secret.txt'), 'invalid_path', /^Path 'secret\.txt' leaves your home$/);
  await rejects(ctx.storage.createUpload('secret.txt', { size: 1, overwrite: true }), 'invalid_path');
  assert.is(await readFile(join(ctx.outside, 'secret.txt'), 'utf8'), 'top secret');
});

links('symlinks inside the home are followed for reading and listed as what they point to', async (ctx) => {
  await put(ctx.storage, 'real/file.txt', 'inside', { parents: true });
  await symlink(join(ctx.home, 'real'), join(ctx.home, 'alias'));
  await symlink('real/file.txt', join(ctx.home, 'file-link'));
  const entries = (await collect(ctx.storage.list(''))).flat();
  assert.equal(
    entries.map((e) => [e.name, e.type, e.size]),
    [
      ['alias', 'dir', 0],
      ['file-link', 'file', 6],
      ['real', 'dir', 0],
    ],
  );
  const handle = await ctx.storage.openRead('alias/file.txt');
  assert.is((await handle.read(0, 100)).toString(), 'inside');
  await handle.close();
  assert.is((await ctx.storage.stat('file-link'))?.size, 6);
  // Upload through the in-home alias lands in the real directory.
  await put(ctx.storage, 'alias/new.txt', 'n');
  assert.is(await readFile(join(ctx.home, 'real', 'new.txt'), 'utf8'), 'n');
  // remove acts on the link itself, never its target.
  await ctx.storage.remove('file-link');
  assert.is(await readFile(join(ctx.home, 'real', 'file.txt'), 'utf8'), 'inside');
});

links('an upload through an in-home alias is busy while the real path is being uploaded', async (ctx) => {
  await ctx.storage.mkdir('real');
  await symlink(join(ctx.home, 'real'), join(ctx.home, 'alias'));
  const first = await ctx.storage.createUpload('real/x', { size: 1 });
  await rejects(ctx.storage.createUpload('alias/x', { size: 1 }), 'busy');
  await first.abort(false);
});

links('usage does not follow symlinks', async (ctx) => {
  await symlink(ctx.outside, join(ctx.home, 'link'));
  await put(ctx.storage, 'a', '12345');
  assert.equal(await ctx.storage.usage(), { bytes: 5, files: 1 });
});

links.run();

// ---------------------------------------------------------------------------------------------------------

const changes = suite<Ctx>('remove, mkdir, rename, usage');
changes.before.each(setup);
changes.after.each(teardown);

changes('remove deletes files and empty directories', async (ctx) => {
  await put(ctx.storage, 'd/f', 'x', { parents: true });
  await rejects(ctx.storage.remove('d'), 'not_empty');
  await ctx.storage.remove('d/f');
  await ctx.storage.remove('d');
  assert.is(await ctx.storage.stat('d'), null);
  await rejects(ctx.storage.remove('d'), 'not_found');
  await rejects(ctx.storage.remove('none/x'), 'not_found');
});

changes('removing the home is refused', async (ctx) => {
  await rejects(ctx.storage.remove(''), 'invalid_path');
  await rejects(ctx.storage.remove('.'), 'invalid_path');
  await rejects(ctx.storage.remove('./'), 'invalid_path');
  assert.ok(await exists(ctx.home));
});

changes('mkdir creates one directory, or the whole chain with parents', async (ctx) => {
  await ctx.storage.mkdir('a');
  await rejects(ctx.storage.mkdir('a'), 'exists');
  await rejects(ctx.storage.mkdir('x/y'), 'not_found');
  await ctx.storage.mkdir('x/y/z', { parents: true });
  assert.ok((await stat(join(ctx.home, 'x', 'y', 'z'))).isDirectory());
  await ctx.storage.mkdir('x/y/z', { parents: true }); // like mkdir -p
  await ctx.storage.mkdir('', { parents: true });
  await rejects(ctx.storage.mkdir(''), 'exists');
  await put(ctx.storage, 'file', 'f');
  await rejects(ctx.storage.mkdir('file'), 'exists');
  await rejects(ctx.storage.mkdir('file', { parents: true }), 'exists');
  await rejects(ctx.storage.mkdir('file/sub', { parents: true }), 'not_a_directory');
  await rejects(ctx.storage.mkdir('file/sub'), 'not_a_directory');
});

changes('rename moves files and directories within the home', async (ctx) => {
  await put(ctx.storage, 'a.txt', 'A');
  await ctx.storage.mkdir('d');
  await ctx.storage.rename('a.txt', 'd/b.txt');
  assert.is(await ctx.storage.stat('a.txt'), null);
  assert.is(await readFile(join(ctx.home, 'd', 'b.txt'), 'utf8'), 'A');
  await ctx.storage.rename('d', 'e');
  assert.is(await readFile(join(ctx.home, 'e', 'b.txt'), 'utf8'), 'A');
});

changes('rename refuses an existing target without overwrite and replaces it with', async (ctx) => {
  await put(ctx.storage, 'a', 'A');
  await put(ctx.storage, 'b', 'B');
  await rejects(ctx.storage.rename('a', 'b'), 'exists', /'b'/);
  assert.is(await readFile(join(ctx.home, 'b'), 'utf8'), 'B');
  await ctx.storage.rename('a', 'b', { overwrite: true });
  assert.is(await readFile(join(ctx.home, 'b'), 'utf8'), 'A');
  assert.is(await ctx.storage.stat('a'), null);
});

changes('rename of something missing is not_found, into a missing directory not_found', async (ctx) => {
  await rejects(ctx.storage.rename('none', 'x'), 'not_found');
  await put(ctx.storage, 'a', 'A');
  await rejects(ctx.storage.rename('a', 'no/dir/a'), 'not_found');
});

changes('rename of a directory into itself is refused', async (ctx) => {
  await ctx.storage.mkdir('d/e', { parents: true });
  await rejects(ctx.storage.rename('d', 'd/e/d'), 'invalid_path', /into itself/);
  await rejects(ctx.storage.rename('d', 'd/x'), 'invalid_path', /into itself/);
  assert.ok(await exists(join(ctx.home, 'd', 'e')));
});

changes('renaming the home, or onto the home, is refused', async (ctx) => {
  await put(ctx.storage, 'a', 'A');
  await rejects(ctx.storage.rename('', 'x'), 'invalid_path', /your home/);
  await rejects(ctx.storage.rename('.', 'x'), 'invalid_path');
  await rejects(ctx.storage.rename('a', ''), 'invalid_path');
});

changes('rename of a directory onto a file, or a file onto a non-empty directory, is refused', async (ctx) => {
  await ctx.storage.mkdir('d');
  await put(ctx.storage, 'd/inner', 'i');
  await put(ctx.storage, 'f', 'F');
  await rejects(ctx.storage.rename('f', 'd', { overwrite: true }), 'is_a_directory');
  await rejects(ctx.storage.rename('d', 'f', { overwrite: true }), 'not_a_directory');
  await ctx.storage.mkdir('d2');
  await put(ctx.storage, 'd2/z', 'z');
  await rejects(ctx.storage.rename('d2', 'd', { overwrite: true }), 'not_empty');
});

changes('a rename without overwrite leaves one name, and is refused as busy while an upload of its target runs', async (ctx) => {
  await put(ctx.storage, 'a', 'A');
  await ctx.storage.rename('a', 'b');
  assert.not.ok(await exists(join(ctx.home, 'a')));
  assert.is((await stat(join(ctx.home, 'b'))).nlink, 1, 'one name for the file');
  // An upload of the target in progress holds its name: the rename is refused as busy, not raced.
  await put(ctx.storage, 'c', 'C');
  const upload = await ctx.storage.createUpload('d', { size: 1 });
  await rejects(ctx.storage.rename('c', 'd'), 'busy', /upload/);
  await upload.abort(false);
  await ctx.storage.rename('c', 'd');
  assert.is(await readFile(join(ctx.home, 'd'), 'utf8'), 'C');
  await rejects(ctx.storage.rename('b', 'd'), 'exists', /exists/);
});

changes('rename onto itself changes nothing', async (ctx) => {
  await put(ctx.storage, 'a', 'A');
  await ctx.storage.rename('a', './a');
  assert.is(await readFile(join(ctx.home, 'a'), 'utf8'), 'A');
});

changes('usage sums file sizes and counts through nested directories', async (ctx) => {
  assert.equal(await ctx.storage.usage(), { bytes: 0, files: 0 });
  await put(ctx.storage, 'a', '123');
  await put(ctx.storage, 'd/e/f/g', '4567', { parents: true });
  await ctx.storage.mkdir('empty');
  let deep = ctx.home;
  for (let i = 0; i < 200; i++) deep = join(deep, 'n');
  await mkdir(deep, { recursive: true });
  await writeFile(join(deep, 'z'), '89');
  assert.equal(await ctx.storage.usage(), { bytes: 9, files: 3 });
  // Partials are not part of the home.
  const upload = await ctx.storage.createUpload('p', { size: 100 });
  await upload.write([Buffer.alloc(50)]);
  assert.equal(await ctx.storage.usage(), { bytes: 9, files: 3 });
  await upload.abort(false);
});

changes('a user name that cannot name a directory is refused', (ctx) => {
  for (const user of ['', '..', 'a/b', '.', 'a\\b', ' ']) {
    try {
      ctx.driver.forUser(user);
      assert.unreachable(`user ${JSON.stringify(user)} was accepted`);
    } catch (err) {
      assert.is((err as FerryError).code, 'invalid_username');
    }
  }
});

changes('users are isolated from each other', async (ctx) => {
  await put(ctx.storage, 'mine.txt', 'alice');
  const bob = ctx.driver.forUser('bob');
  assert.is(await bob.stat('mine.txt'), null);
  await rejects(bob.openRead('../alice/mine.txt'), 'invalid_path');
  assert.equal(await bob.usage(), { bytes: 0, files: 0 });
});

changes.run();

// deferChecks: a small upload makes no file-system call as it starts; its commit checks what the start would
// have checked, and refuses with the same codes (pinned mode: elsewhere the upload is checked as it starts).
const deferred = suite<Ctx>('uploads with deferred checks');
deferred.before.each(setup);
deferred.after.each(teardown);

const later = { deferChecks: true, mayCreateParents: true } as const;

deferred('a small upload is stored with its time; nothing is looked up as it starts', async (ctx) => {
  await mkdir(join(ctx.home, 'd'));
  const upload = await ctx.storage.createUpload('d/a.txt', { size: 5, mtime: Date.UTC(2021, 1, 3), ...later });
  assert.is(upload.replaces, null);
  await upload.write([Buffer.from('hello')]);
  const entry = await upload.commit(sha('hello'));
  assert.equal(entry, { name: 'a.txt', type: 'file', size: 5, mtime: Date.UTC(2021, 1, 3) });
  assert.is(await readFile(join(ctx.home, 'd', 'a.txt'), 'utf8'), 'hello');
  assert.equal(await readdir(ctx.partials), []);
});

deferred('refusals come at commit, with the codes of the start, and leave nothing behind', async (ctx) => {
  if (!(await canPinDirectories())) return skip('no /proc/self/fd: uploads are checked as they start, not at commit');
  await writeFile(join(ctx.home, 'x'), 'old');
  await mkdir(join(ctx.home, 'dir'));
  await writeFile(join(ctx.home, 'file'), 'f');
  await symlink(ctx.outside, join(ctx.home, 'out'));
  const cases: Array<[string, Partial<UploadOptions>, string]> = [
    ['x', {}, 'exists'],
    ['dir', { overwrite: true }, 'is_a_directory'],
    ['out/secret.txt', { overwrite: true }, 'invalid_path'],
    ['missing/a', {}, 'not_found'],
    ['missing/a', { parents: true, mayCreateParents: false }, 'permission_denied'],
    ['file/a', { parents: true }, 'not_a_directory'],
  ];
  for (const [path, options, code] of cases) {
    const upload = await ctx.storage.createUpload(path, { size: 3, ...later, ...options });
    await upload.write([Buffer.from('new')]);
    await rejects(upload.commit(sha('new')), code);
  }
  assert.is(await readFile(join(ctx.home, 'x'), 'utf8'), 'old');
  assert.is(await readFile(join(ctx.outside, 'secret.txt'), 'utf8'), 'top secret');
  assert.is(await stat(join(ctx.home, 'missing')).catch(() => null), null, 'no directory made without the permission');
  assert.equal(await readdir(ctx.partials), [], 'no partial kept for a refused upload');
  // The same with overwrite and parents allowed: placed.
  await put(ctx.storage, 'x', 'new', { ...later, overwrite: true });
  await put(ctx.storage, 'missing/deep/a', 'new', { ...later, parents: true });
  assert.is(await readFile(join(ctx.home, 'x'), 'utf8'), 'new');
  assert.is(await readFile(join(ctx.home, 'missing', 'deep', 'a'), 'utf8'), 'new');
});

deferred('a second upload of the same path while one is open is busy; damaged bytes are refused', async (ctx) => {
  const first = await ctx.storage.createUpload('a', { size: 3, ...later });
  await rejects(ctx.storage.createUpload('a', { size: 3, ...later }), 'busy');
  await rejects(ctx.storage.createUpload('a', { size: 3 }), 'busy');
  await first.write([Buffer.from('abc')]);
  await rejects(first.commit(sha('abd')), 'digest_mismatch');
  assert.is(await ctx.storage.stat('a'), null);
  await put(ctx.storage, 'a', 'abc', later);
  assert.is(await readFile(join(ctx.home, 'a'), 'utf8'), 'abc');
});

deferred('many commits at once go to the worker together and each gets its own answer', async (ctx) => {
  await writeFile(join(ctx.home, 'taken'), 'old');
  const names = Array.from({ length: 40 }, (_, i) => `f${i}`);
  const results = await Promise.allSettled([...names, 'taken'].map((n) => put(ctx.storage, n, `content ${n}`, later)));
  assert.equal(results.map((r) => r.status), [...names.map(() => 'fulfilled'), 'rejected']);
  for (const n of names) assert.is(await readFile(join(ctx.home, n), 'utf8'), `content ${n}`);
  assert.is(await readFile(join(ctx.home, 'taken'), 'utf8'), 'old');
});

deferred('a small upload sent in pieces is held whole: reused buffers of the caller do not change it', async (ctx) => {
  const data = randomBytes(40_000);
  const original = Buffer.from(data);
  const upload = await ctx.storage.createUpload('pieces.bin', { size: data.length, ...later });
  const scratch = Buffer.alloc(7_000);
  for (let at = 0; at < data.length; at += 9_000) {
    // Each write: a piece copied into a scratch buffer the caller overwrites at once, and a slice of the data.
    const first = data.subarray(at, Math.min(at + 7_000, data.length));
    first.copy(scratch);
    await upload.write([scratch.subarray(0, first.length), data.subarray(at + first.length, Math.min(at + 9_000, data.length))]);
    scratch.fill(0xee);
  }
  await upload.commit(sha(data));
  assert.ok((await readFile(join(ctx.home, 'pieces.bin'))).equals(data));
  assert.ok(data.equals(original), 'the caller keeps its own buffers (they are copied, never handed to the worker)');
});

deferred.run();

const locks = suite('name locks');

locks('a name taken by an upload that is ending is waited for; one in progress is refused at once; the wait is bounded', async () => {
  const l = new NameLocks();
  const first = l.take('a');
  assert.ok(first);
  assert.is(l.take('a'), null, 'taken');
  assert.is(await l.takeWhenFree('a', undefined, 60_000), null, 'in progress, not ending: refused without waiting');
  first.ending();
  let got: ReturnType<NameLocks['take']> | undefined;
  const waiting = l.takeWhenFree('a', undefined, 60_000).then((hold) => (got = hold));
  await new Promise((r) => setTimeout(r, 20));
  assert.is(got, undefined, 'waits while the ending holder has not let go');
  first();
  await waiting;
  assert.ok(got, 'taken once it lets go');
  got.ending();
  assert.is(await l.takeWhenFree('a', undefined, 30), null, 'an ending holder that does not let go in time: refused');
});

locks('a hold lets go once: a stale hold neither frees nor marks the next holder; onRelease runs once', async () => {
  const l = new NameLocks();
  let released = 0;
  const first = l.take('k', () => released++);
  assert.ok(first);
  first();
  first();
  assert.is(released, 1);
  const second = l.take('k');
  assert.ok(second, 'free after the first let go');
  first();
  first.ending();
  assert.is(l.take('k'), null, 'the stale hold did not free the second');
  const t0 = Date.now();
  assert.is(await l.takeWhenFree('k', undefined, 2000), null, 'the second is not ending: refused at once');
  assert.ok(Date.now() - t0 < 1000, 'not waited for');
  second();
  assert.ok(l.take('k'));
});

locks('a reservation given back twice, or said to be ending after it was given back, does not touch the next holder', async () => {
  const root = await mkdtemp(join(tmpdir(), 'ferry-locks-'));
  try {
    const partials = new Partials(join(root, 'p'), new NameLocks(), new Set());
    const first = await partials.reserve('/t/x', ['x'], 1, 'x');
    first.release();
    const second = await partials.reserve('/t/x', ['x'], 1, 'x');
    first.release();
    first.ending();
    const third = partials.reserve('/t/x', ['x'], 1, 'x').then(
      () => 'ok',
      (err: FerryError) => err.code,
    );
    assert.is(await Promise.race([third, new Promise((r) => setTimeout(() => r('waited'), 2000))]), 'busy', 'the second holds it, not ending');
    second.release();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

locks.run();
