// The local driver's bundles (Storage.openBundle, openBundleRead, putWhole, listTree): stored and read in its
// worker thread with the same confinement and the same refusals as one file at a time, against real files.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FerryError } from '../../src/core/errors.ts';
import type { Entry } from '../../src/core/types.ts';
import { encodeRecordHeader, RecordDecoder, type PutHeader } from '../../src/protocol/bundle.ts';
import { HEADER_SIZE } from '../../src/protocol/frame.ts';
import { canPinDirectories, LocalDiskDriver } from '../../src/storage/local/mod.ts';
import type { BundleReadResult, BundleResult, Storage } from '../../src/storage/storage.ts';
import { skip } from '../skip.ts';

interface Ctx {
  root: string;
  home: string;
  partials: string;
  outside: string;
  storage: Storage;
}

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest();

async function setup(ctx: Ctx): Promise<void> {
  ctx.root = await mkdtemp(join(tmpdir(), 'ferry-bundle-'));
  const data = join(ctx.root, 'data');
  ctx.outside = join(ctx.root, 'outside');
  await mkdir(ctx.outside);
  await writeFile(join(ctx.outside, 'secret.txt'), 'top secret');
  ctx.storage = new LocalDiskDriver(data).forUser('alice');
  ctx.home = join(data, 'homes', 'alice');
  ctx.partials = join(data, '.partial', 'alice');
  await ctx.storage.usage(); // creates the home
}

async function teardown(ctx: Ctx): Promise<void> {
  await rm(ctx.root, { recursive: true, force: true });
}

function record(header: Omit<PutHeader, 'size'>, body: Buffer | string, digestOf?: Buffer | string): Buffer {
  const bytes = Buffer.from(body);
  return Buffer.concat([encodeRecordHeader('put', { ...header, size: bytes.length }), bytes, sha(digestOf ?? bytes)]);
}

/** Stores `records` as one bundle, cut in pieces of `piece` bytes; the results by index. */
async function storeBundle(storage: Storage, records: Buffer[], options: { mayOverwrite?: boolean; mayCreateParents?: boolean; maxFileBytes?: number; piece?: number } = {}): Promise<Map<number, BundleResult>> {
  const results = new Map<number, BundleResult>();
  const sink = await storage.openBundle({
    mayOverwrite: options.mayOverwrite ?? true,
    mayCreateParents: options.mayCreateParents ?? true,
    maxFileBytes: options.maxFileBytes ?? 2 ** 40,
    maxHeader: 64 * 1024,
    maxBody: 1024 * 1024,
    onResult: (r) => {
      assert.not.ok(results.has(r.index), `record ${r.index} reported once`);
      results.set(r.index, r);
    },
    onBroken: () => {},
  });
  assert.ok(sink, 'the local driver takes bundles (pinned, with its worker)');
  const stream = Buffer.concat(records);
  const piece = options.piece ?? 1000;
  for (let at = 0; at < stream.length; at += piece) await sink.write([stream.subarray(at, at + piece)]);
  await sink.end();
  return results;
}

function codeOf(r: BundleResult | BundleReadResult | undefined): string {
  if (r === undefined) return 'missing';
  return r.error === undefined ? 'ok' : r.error.code;
}

const t = suite<Ctx>('bundles in the local driver');
t.before.each(setup);
t.after.each(teardown);

t('a bundle stores each file whole, with its time, creating folders; nothing is left in the partials', async (ctx) => {
  if (!(await canPinDirectories())) return skip('no /proc/self/fd: bundles are stored one file at a time by the server');
  const files = Array.from({ length: 60 }, (_, i) => ({ path: `tree/d${i % 4}/sub/f${i}.bin`, body: randomBytes(i * 997), mtime: 1_600_000_000_000 + i * 1001 }));
  const results = await storeBundle(ctx.storage, files.map((f) => record({ path: f.path, mtime: f.mtime, parents: true }, f.body)), { piece: 4096 });
  assert.is(results.size, files.length);
  for (const [i, f] of files.entries()) {
    const r = results.get(i);
    assert.is(codeOf(r), 'ok', f.path);
    assert.is(r?.entry?.size, f.body.length);
    assert.ok((await readFile(join(ctx.home, f.path))).equals(f.body), f.path);
    assert.is(Math.floor((await stat(join(ctx.home, f.path))).mtimeMs), f.mtime, `${f.path}: time kept exactly`);
  }
  assert.equal(await readdir(ctx.partials), []);
});

t('each record is refused as a put would be, and the others are stored', async (ctx) => {
  if (!(await canPinDirectories())) return skip('no /proc/self/fd: bundles are stored one file at a time by the server');
  await writeFile(join(ctx.home, 'taken.txt'), 'old');
  await mkdir(join(ctx.home, 'adir'));
  await writeFile(join(ctx.home, 'afile'), 'f');
  await symlink(ctx.outside, join(ctx.home, 'out'));
  await symlink(join(ctx.outside, 'secret.txt'), join(ctx.home, 'link.txt'));
  const cases: Array<[Buffer, string]> = [
    [record({ path: 'good.txt' }, 'good'), 'ok'],
    [record({ path: 'taken.txt' }, 'new'), 'exists'],
    [record({ path: 'adir', overwrite: true }, 'x'), 'is_a_directory'],
    [record({ path: 'out/secret.txt', overwrite: true }, 'x'), 'invalid_path'],
    [record({ path: 'link.txt', overwrite: true }, 'x'), 'invalid_path'],
    [record({ path: '../escape.txt' }, 'x'), 'invalid_path'],
    [record({ path: '' }, 'x'), 'is_a_directory'],
    [record({ path: 'missing/a.txt' }, 'x'), 'not_found'],
    [record({ path: 'afile/a.txt', parents: true }, 'x'), 'not_a_directory'],
    [record({ path: 'damaged.txt' }, 'the bytes', 'other bytes'), 'digest_mismatch'],
    [record({ path: 'big.txt' }, 'x'.repeat(101)), 'too_large'],
    [record({ path: 'last.txt' }, 'last'), 'ok'],
  ];
  const results = await storeBundle(ctx.storage, cases.map(([r]) => r), { maxFileBytes: 100 });
  assert.equal(cases.map((_, i) => codeOf(results.get(i))), cases.map(([, code]) => code));
  assert.is(await readFile(join(ctx.home, 'taken.txt'), 'utf8'), 'old');
  assert.is(await readFile(join(ctx.outside, 'secret.txt'), 'utf8'), 'top secret');
  assert.is(await readFile(join(ctx.home, 'last.txt'), 'utf8'), 'last');
  for (const name of ['damaged.txt', 'big.txt', 'missing']) assert.is(await stat(join(ctx.home, name)).catch(() => null), null, `${name} not made`);
  assert.is(await stat(join(ctx.root, 'data', 'homes', 'escape.txt')).catch(() => null), null);
  assert.equal(await readdir(ctx.partials), [], 'no partial kept for a refused record');
});

t('without the permissions: no overwrite, no folders made', async (ctx) => {
  if (!(await canPinDirectories())) return skip('no /proc/self/fd: bundles are stored one file at a time by the server');
  await writeFile(join(ctx.home, 'a.txt'), 'old');
  const results = await storeBundle(ctx.storage, [record({ path: 'a.txt', overwrite: true }, 'new'), record({ path: 'n/b.txt', parents: true }, 'b')], {
    mayOverwrite: false,
    mayCreateParents: false,
  });
  assert.equal([codeOf(results.get(0)), codeOf(results.get(1))], ['exists', 'permission_denied']);
  assert.is(await readFile(join(ctx.home, 'a.txt'), 'utf8'), 'old');
  assert.is(await stat(join(ctx.home, 'n')).catch(() => null), null);
});

t('a malformed stream, or one that ends inside a record, is bad_message', async (ctx) => {
  if (!(await canPinDirectories())) return skip('no /proc/self/fd: bundles are stored one file at a time by the server');
  const half = record({ path: 'a.txt' }, 'abcdef').subarray(0, 20);
  await storeBundle(ctx.storage, [half]).then(
    () => assert.unreachable('ended inside a record'),
    (err: unknown) => assert.is((err as FerryError).code, 'bad_message'),
  );
  await storeBundle(ctx.storage, [record({ path: 'ok.txt' }, 'fine'), Buffer.from([0, 0, 0, 2, 0x7b, 0x7d])]).then(
    () => assert.unreachable('a header without its fields'),
    (err: unknown) => assert.is((err as FerryError).code, 'bad_message'),
  );
});

t('a download bundle sends each file as a record, and refuses what get would refuse', async (ctx) => {
  if (!(await canPinDirectories())) return skip('no /proc/self/fd: bundles are read one file at a time by the server');
  await mkdir(join(ctx.home, 'd', 'e'), { recursive: true });
  const files = new Map([
    ['d/a.bin', randomBytes(70_000)],
    ['d/e/b.txt', Buffer.from('bee')],
    ['empty', Buffer.alloc(0)],
  ]);
  for (const [path, body] of files) await writeFile(join(ctx.home, path), body);
  await symlink(join(ctx.home, 'd', 'e', 'b.txt'), join(ctx.home, 'inside-link'));
  await symlink(join(ctx.outside, 'secret.txt'), join(ctx.home, 'outside-link'));
  await writeFile(join(ctx.home, 'large.bin'), randomBytes(2000));
  const wants = ['d/a.bin', 'd/e/b.txt', 'empty', 'inside-link', 'outside-link', 'nothing', 'd', 'large.bin', '../x'];
  const results = new Map<number, BundleReadResult>();
  const pieces: Buffer[] = [];
  const source = await ctx.storage.openBundleRead({
    maxFileBytes: 1500,
    maxHeader: 64 * 1024,
    frame: 4096,
    send: (p) => {
      for (const piece of p) {
        assert.ok(piece.length > HEADER_SIZE && piece.length <= HEADER_SIZE + 4096, 'a piece is one frame');
        pieces.push(Buffer.from(piece.subarray(HEADER_SIZE)));
      }
      return true;
    },
    drained: () => Promise.resolve(),
    onResult: (r) => results.set(r.index, r),
    onBroken: (err) => assert.unreachable(err.message),
  });
  assert.ok(source);
  await source.write([Buffer.concat(wants.map((path) => encodeRecordHeader('want', { path })))]);
  await source.end();
  assert.equal(wants.map((_, i) => codeOf(results.get(i))), ['too_large', 'ok', 'ok', 'ok', 'invalid_path', 'not_found', 'is_a_directory', 'too_large', 'invalid_path']);
  const got = new Map<number, { body: Buffer; mtime: number }>();
  const decoder = new RecordDecoder('file', { maxHeader: 64 * 1024, maxBody: 1024 * 1024 }, (r) => {
    assert.ok((r.digest as Buffer).equals(sha(r.body as Buffer)), 'each record carries its digest');
    got.set(r.header.index, { body: r.body as Buffer, mtime: r.header.mtime });
  });
  for (const p of pieces) decoder.push(p);
  assert.ok(decoder.atBoundary);
  assert.equal([...got.keys()].sort(), [1, 2, 3]);
  assert.ok(got.get(1)?.body.equals(Buffer.from('bee')));
  assert.is(got.get(2)?.body.length, 0);
  assert.ok(got.get(3)?.body.equals(Buffer.from('bee')), 'a symlink inside the home is read as what it points to');
  assert.is(got.get(1)?.mtime, Math.floor((await stat(join(ctx.home, 'd', 'e', 'b.txt'))).mtimeMs));
  assert.is((results.get(1) as { sha256: string }).sha256, sha('bee').toString('hex'));
});

t('a download bundle reads ahead a bounded amount while the client is behind, then the rest', async (ctx) => {
  if (!(await canPinDirectories())) return skip('no /proc/self/fd: bundles are read one file at a time by the server');
  // 64 files of 256 KiB = 16 MiB named in one piece of the stream; the client takes nothing until told.
  const body = (i: number) => Buffer.alloc(256 * 1024, i);
  for (let i = 0; i < 64; i++) await writeFile(join(ctx.home, `f${i}`), body(i));
  let sentBytes = 0;
  let release: () => void = () => {};
  const caughtUp = new Promise<void>((resolve) => (release = resolve));
  let behind = true;
  const results = new Map<number, BundleReadResult>();
  const got = new Map<number, Buffer>();
  const decoder = new RecordDecoder('file', { maxHeader: 64 * 1024, maxBody: 1024 * 1024 }, (r) => got.set(r.header.index, r.body as Buffer));
  const source = await ctx.storage.openBundleRead({
    maxFileBytes: 1024 * 1024,
    maxHeader: 64 * 1024,
    frame: 512 * 1024,
    send: (p) => {
      for (const piece of p) {
        sentBytes += piece.length - HEADER_SIZE;
        decoder.push(piece.subarray(HEADER_SIZE));
      }
      return !behind;
    },
    drained: () => (behind ? caughtUp : Promise.resolve()),
    onResult: (r) => results.set(r.index, r),
    onBroken: (err) => assert.unreachable(err.message),
  });
  assert.ok(source);
  await source.write([Buffer.concat(Array.from({ length: 64 }, (_, i) => encodeRecordHeader('want', { path: `f${i}` })))]);
  const settled = source.settled();
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(sentBytes > 0 && sentBytes <= 6 * 1024 * 1024, `read ahead while the client is behind: ${sentBytes} bytes (the budget is 4 MiB)`);
  behind = false;
  release();
  await settled;
  await source.end();
  assert.is(results.size, 64);
  assert.is(got.size, 64);
  for (let i = 0; i < 64; i++) assert.ok(got.get(i)?.equals(body(i)), `file ${i} whole`);
});

t('putWhole stores a file in one step, verified, and refuses as an upload would', async (ctx) => {
  const bytes = () => Buffer.from('whole file');
  const entry = await ctx.storage.putWhole('w/x.txt', bytes(), { sha256: sha('whole file').toString('hex'), parents: true, mayCreateParents: true, mtime: 1_500_000_000_123 });
  assert.equal(entry, { name: 'x.txt', type: 'file', size: 10, mtime: 1_500_000_000_123 });
  assert.is(await readFile(join(ctx.home, 'w', 'x.txt'), 'utf8'), 'whole file');
  for (const [options, code] of [
    [{ sha256: sha('whole file').toString('hex') }, 'exists'],
    [{ sha256: sha('other').toString('hex'), overwrite: true }, 'digest_mismatch'],
  ] as const) {
    await ctx.storage.putWhole('w/x.txt', bytes(), options).then(
      () => assert.unreachable(code),
      (err: unknown) => assert.is((err as FerryError).code, code),
    );
  }
  assert.equal(await readdir(ctx.partials), []);
});

t('listTree: everything below, by relative path, folders first, a symlink loop walked once', async (ctx) => {
  await mkdir(join(ctx.home, 'top', 'a', 'b'), { recursive: true });
  await writeFile(join(ctx.home, 'top', 'a', 'b', 'c.txt'), 'c');
  await writeFile(join(ctx.home, 'top', 'z.txt'), 'zz');
  await symlink(join(ctx.home, 'top'), join(ctx.home, 'top', 'a', 'loop'));
  await symlink(ctx.outside, join(ctx.home, 'top', 'out'));
  const entries: Entry[] = [];
  for await (const page of ctx.storage.listTree('top')) entries.push(...page);
  const names = entries.map((e) => `${e.type === 'dir' ? 'd' : 'f'} ${e.name}`);
  // Each folder's entries together (in name order), then its folders walked in turn; `out` leaves the home.
  assert.equal(names, ['d a', 'f z.txt', 'd a/b', 'd a/loop', 'f a/b/c.txt']);
  assert.is(entries.find((e) => e.name === 'z.txt')?.size, 2);
});

t.run();
