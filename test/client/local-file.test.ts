import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalFile, LocalTarget } from '../../src/client/local-file.ts';

const local = suite('client: local files opened for upload');
const dir = mkdtempSync(join(tmpdir(), 'ferry-local-file-'));
local.after(() => rmSync(dir, { recursive: true, force: true }));

/** Everything the file gives, read in `step`-byte pieces at increasing positions. */
async function readAll(file: LocalFile, step: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; ; ) {
    const buf = Buffer.alloc(step);
    const { bytesRead } = await file.read(buf, 0, step, at);
    if (bytesRead === 0) break;
    parts.push(buf.subarray(0, bytesRead));
    at += bytesRead;
  }
  return Buffer.concat(parts);
}

for (const size of [0, 1, 4096, 64 * 1024, 64 * 1024 + 1, 300_000]) {
  local(`a file of ${size} bytes reads back whole, in pieces and at an offset`, async () => {
    const body = randomBytes(size);
    const path = join(dir, `f${size}`);
    writeFileSync(path, body);
    const file = await LocalFile.open(path);
    assert.is(file.size, size);
    assert.ok((await readAll(file, 7000)).equals(body));
    if (size > 10) {
      const buf = Buffer.alloc(10);
      const { bytesRead } = await file.read(buf, 2, 5, size - 3);
      assert.is(bytesRead, 3);
      assert.ok(buf.subarray(2, 5).equals(body.subarray(size - 3)));
    }
    await file.close();
    await file.close(); // twice is fine
  });
}

/** The message `promise` rejects with. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return String((err as Error).message);
  }
  assert.unreachable('it was not refused');
  return '';
}

local('closing while reads are under way waits for them, so the descriptor is not reused under them', async () => {
  const body = randomBytes(1 << 20);
  const path = join(dir, 'inflight.bin');
  writeFileSync(path, body);
  const file = await LocalFile.open(path);
  const bufs = Array.from({ length: 4 }, () => Buffer.alloc(1 << 18));
  const reads = bufs.map((b, i) => file.read(b, 0, b.length, i << 18));
  await file.close();
  const got = await Promise.all(reads);
  assert.equal(got.map((r) => r.bytesRead), [1 << 18, 1 << 18, 1 << 18, 1 << 18]);
  assert.ok(Buffer.concat(bufs).equals(body));
});

local('a directory, a FIFO and a missing file are refused at once', async () => {
  mkdirSync(join(dir, 'sub'));
  assert.match(await refusal(LocalFile.open(join(dir, 'sub'))), /not a regular file/);
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  const started = Date.now();
  assert.match(await refusal(LocalFile.open(join(dir, 'fifo'))), /not a regular file/);
  assert.ok(Date.now() - started < 2000, 'a FIFO does not block the open');
  assert.match(await refusal(LocalFile.open(join(dir, 'missing'))), /ENOENT/);
});

for (const small of [true, false]) {
  local(`a download target (${small ? 'small: written synchronously' : 'large: written asynchronously'}) keeps or empties the partial and writes where told`, async () => {
    const path = join(dir, `part-${small}`);
    writeFileSync(path, 'abcdef');
    const kept = LocalTarget.open(path, true);
    assert.is(kept.initialSize, 6);
    kept.small = small;
    const head = Buffer.alloc(6);
    assert.is((await kept.read(head, 0, 6, 0)).bytesRead, 6);
    assert.is(head.toString(), 'abcdef');
    assert.is((await kept.writev([Buffer.from('GH'), Buffer.from('IJ')], 6)).bytesWritten, 4);
    await kept.sync();
    await kept.close();
    await kept.close();
    assert.is(readFileSync(path, 'utf8'), 'abcdefGHIJ');
    const fresh = LocalTarget.open(path, false);
    assert.is(fresh.initialSize, 0);
    fresh.small = small;
    await fresh.writev([Buffer.from('xyz')], 0);
    await fresh.close();
    assert.is(readFileSync(path, 'utf8'), 'xyz');
    assert.throws(() => fresh.writev([Buffer.from('late')], 0), /closed/);
  });
}

local('a download target that is a directory or a FIFO is refused at once', () => {
  mkdirSync(join(dir, 'target-dir'));
  assert.throws(() => LocalTarget.open(join(dir, 'target-dir'), true), /EISDIR|not a regular file/);
  execFileSync('mkfifo', [join(dir, 'target-fifo')]);
  assert.throws(() => LocalTarget.open(join(dir, 'target-fifo'), true), /not a regular file/);
  assert.ok(LocalTarget.isSmall(64 * 1024) && !LocalTarget.isSmall(64 * 1024 + 1));
});

local.run();
