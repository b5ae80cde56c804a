// The worker threads that commit small uploads in one hop (src/storage/commit-worker.ts), driven directly:
// real files, a real worker, a FIFO standing in for a disk that hangs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmallCommits, type SmallCommit } from '../../src/storage/local/lanes.ts';
import { skip } from '../skip.ts';

const test = suite('storage: small commits in worker threads');
let root = '';
let home = '';
let commits: SmallCommits;

/** A fresh root with a home holding folders d and e, a partials folder, and a new SmallCommits. */
function fresh(): void {
  root = realpathSync(mkdtempSync(join(tmpdir(), 'ferry-commits-')));
  home = join(root, 'home');
  mkdirSync(join(home, 'd'), { recursive: true });
  mkdirSync(join(home, 'e'), { recursive: true });
  mkdirSync(join(root, 'partials'));
  commits = new SmallCommits();
}
async function cleanUp(): Promise<void> {
  await commits.close();
  rmSync(root, { recursive: true, force: true });
}
test.before.each(fresh);
test.after.each(cleanUp);

const job = (name: string, over: Partial<SmallCommit> = {}): SmallCommit => ({
  partial: join(root, 'partials', `${name}.part`),
  chunks: [Buffer.from('abc'), Buffer.from('def')],
  mtime: Date.UTC(2020, 0, 2),
  dir: join(home, 'd'),
  home,
  name,
  overwrite: false,
  ...over,
});

test('a commit writes the partial, sets its time and moves it into the directory', async () => {
  const r = await commits.run(job('a.txt'));
  assert.equal(r, { ok: true, mtimeMs: Date.UTC(2020, 0, 2) });
  assert.is(readFileSync(join(home, 'd', 'a.txt'), 'utf8'), 'abcdef');
  assert.is(statSync(join(home, 'd', 'a.txt')).mtimeMs, Date.UTC(2020, 0, 2));
  assert.not.ok(existsSync(join(root, 'partials', 'a.txt.part')), 'the partial is gone');
  const now = await commits.run(job('b.txt', { mtime: null }));
  assert.ok(now.ok && Math.abs(now.mtimeMs - Date.now()) < 60_000, 'no mtime given: the time of writing');
});

test('refusals: an existing target, a directory, a link or a directory leading out of the home', async () => {
  writeFileSync(join(home, 'd', 'x'), 'old');
  assert.equal(await commits.run(job('x')), { ok: false, stage: 'place', refused: 'exists', mtimeMs: Date.UTC(2020, 0, 2) });
  assert.is(readFileSync(join(home, 'd', 'x'), 'utf8'), 'old');
  assert.ok((await commits.run(job('x', { overwrite: true }))).ok, 'overwrite replaces it');
  assert.is(readFileSync(join(home, 'd', 'x'), 'utf8'), 'abcdef');
  mkdirSync(join(home, 'd', 'sub'));
  assert.is((await commits.run(job('sub', { overwrite: true })) as { refused?: string }).refused, 'is_a_directory');
  writeFileSync(join(root, 'secret'), 'secret');
  symlinkSync(join(root, 'secret'), join(home, 'd', 'out'));
  assert.is((await commits.run(job('out', { overwrite: true })) as { refused?: string }).refused, 'leaves');
  assert.is(readFileSync(join(root, 'secret'), 'utf8'), 'secret');
  symlinkSync(root, join(home, 'away'));
  assert.is((await commits.run(job('y', { dir: join(home, 'away') })) as { refused?: string }).refused, 'leaves');
  assert.not.ok(existsSync(join(root, 'y')), 'nothing placed outside');
  const missing = await commits.run(job('z', { dir: join(home, 'nope') }));
  assert.equal([missing.ok, (missing as { stage?: string }).stage, (missing as { code?: string }).code], [false, 'place', 'ENOENT']);
});

test('a small read: the file whole, or large, or refused like openRead refuses', async () => {
  writeFileSync(join(home, 'd', 'small'), 'hello');
  writeFileSync(join(home, 'd', 'big'), Buffer.alloc(70_000));
  const small = await commits.read({ path: join(home, 'd', 'small'), home, max: 65_536 });
  assert.ok(small.ok && 'bytes' in small);
  assert.is(Buffer.from((small as { bytes: Uint8Array }).bytes).toString(), 'hello');
  assert.is((small as { size: number }).size, 5);
  assert.equal(await commits.read({ path: join(home, 'd', 'big'), home, max: 65_536 }), { ok: true, large: true });
  writeFileSync(join(root, 'secret'), 'secret');
  symlinkSync(join(root, 'secret'), join(home, 'd', 'out'));
  assert.equal(await commits.read({ path: join(home, 'd', 'out'), home, max: 65_536 }), { ok: true, refused: 'leaves' });
  assert.equal(await commits.read({ path: join(home, 'd'), home, max: 65_536 }), { ok: true, refused: 'is_a_directory' });
  assert.equal(await commits.read({ path: home, home, max: 65_536 }), { ok: true, refused: 'is_a_directory' });
  const missing = await commits.read({ path: join(home, 'nope'), home, max: 65_536 });
  assert.equal([missing.ok, (missing as { code?: string }).code], [false, 'ENOENT']);
});

test('a partial that cannot be written is removed and the error says why', async () => {
  const r = await commits.run(job('w', { partial: join(root, 'no-such-dir', 'w.part') }));
  assert.equal([r.ok, (r as { stage?: string }).stage, (r as { code?: string }).code], [false, 'write', 'ENOENT']);
});

test('a commit stuck on the disk does not hold up the others: another lane takes them', async () => {
  // Opening a FIFO for writing blocks until a reader comes: a commit that hangs the way one on a dead disk would.
  const fifo = join(root, 'partials', 'stuck.part');
  if (spawnSync('mkfifo', [fifo]).status !== 0) return skip('no mkfifo on this system');
  assert.ok((await commits.run(job('warm'))).ok, 'the first lane is up');
  const stuck = commits.run(job('stuck', { partial: fifo }));
  await new Promise((r) => setTimeout(r, 100));
  let reader: number | undefined;
  try {
    const other = await Promise.race([commits.run(job('other')), new Promise<null>((r) => setTimeout(() => r(null), 5_000))]);
    assert.ok(other?.ok, 'the other commit went through, without waiting for the stuck one');
  } finally {
    reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK); // lets the stuck one go on (and fail: no fsync on a FIFO)
  }
  try {
    assert.not.ok((await stuck).ok);
  } finally {
    closeSync(reader);
  }
});

test('a running SHA-256 in the worker: the state after each piece, loaded again anywhere, gives the digest of every byte', async () => {
  const { createSHA256 } = await import('hash-wasm');
  const { createHash, randomBytes } = await import('node:crypto');
  const digestOf = async (state: Uint8Array) => {
    const h = await createSHA256();
    h.init();
    h.load(state);
    return h.digest('hex');
  };
  const hashIn = (start: Uint8Array | undefined, pieces: Buffer[]) =>
    new Promise<Uint8Array[]>((resolve, reject) => {
      const states: Uint8Array[] = [];
      const lane = commits.bundle(
        (reply) => {
          if (reply.state === undefined) return reject(new Error(reply.error?.message ?? 'no state'));
          states.push(reply.state);
          if (states.length === pieces.length) {
            lane.send({ seq: 0, abort: true });
            lane.close();
            resolve(states);
          }
        },
        reject,
      );
      lane.send({ hash: start ? { state: start } : {} });
      pieces.forEach((piece, i) => lane.send({ seq: i + 1, chunks: [piece] }));
    });
  const pieces = [randomBytes(3_000_001), randomBytes(64), randomBytes(1_000_000)];
  const states = await hashIn(undefined, pieces);
  for (let i = 0; i < pieces.length; i++) {
    assert.is(await digestOf(states[i] as Uint8Array), createHash('sha256').update(Buffer.concat(pieces.slice(0, i + 1))).digest('hex'));
  }
  // Another worker (a restart, another server) goes on from the state after the first piece.
  await commits.close();
  commits = new SmallCommits();
  const [after] = await hashIn(states[0], [Buffer.concat(pieces.slice(1))]);
  assert.is(await digestOf(after as Uint8Array), createHash('sha256').update(Buffer.concat(pieces)).digest('hex'));
});

test.run();

const batch = suite('storage: commits and reads asked for together');
batch.before.each(fresh);
batch.after.each(cleanUp);

batch('jobs of one turn share a batch: each is answered on its own, in two directories, with reads among them', async () => {
  writeFileSync(join(home, 'd', 'taken'), 'old');
  writeFileSync(join(home, 'e', 'r'), 'read me');
  const jobs = [];
  for (let i = 0; i < 30; i++) jobs.push(commits.run(job(`f${i}`, { dir: join(home, i % 2 ? 'd' : 'e'), chunks: [Buffer.from(`n${i}`)] })));
  const taken = commits.run(job('taken'));
  const read = commits.read({ path: join(home, 'e', 'r'), home, max: 65_536 });
  const missing = commits.run(job('m', { dir: join(home, 'nope') }));
  const results = await Promise.all(jobs);
  assert.ok(results.every((r) => r.ok), 'every commit placed');
  for (let i = 0; i < 30; i++) assert.is(readFileSync(join(home, i % 2 ? 'd' : 'e', `f${i}`), 'utf8'), `n${i}`);
  assert.is((await taken as { refused?: string }).refused, 'exists');
  assert.is(readFileSync(join(home, 'd', 'taken'), 'utf8'), 'old');
  const r = await read;
  assert.is(Buffer.from((r as { bytes: Uint8Array }).bytes).toString(), 'read me');
  assert.is((await missing as { code?: string }).code, 'ENOENT');
});

batch('closing rejects the jobs not yet sent', async () => {
  const pending = commits.run(job('late'));
  await commits.close();
  try {
    await pending;
    assert.unreachable('a job asked for before close was run');
  } catch (err) {
    assert.match(String(err), /stopped/);
  }
  commits = new SmallCommits(); // for after.each
});

batch.run();
