import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalFile } from '../../src/client/local-file.ts';

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

local('a directory, a FIFO and a missing file are refused at once', async () => {
  mkdirSync(join(dir, 'sub'));
  assert.match(await refusal(LocalFile.open(join(dir, 'sub'))), /not a regular file/);
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  const started = Date.now();
  assert.match(await refusal(LocalFile.open(join(dir, 'fifo'))), /not a regular file/);
  assert.ok(Date.now() - started < 2000, 'a FIFO does not block the open');
  assert.match(await refusal(LocalFile.open(join(dir, 'missing'))), /ENOENT/);
});

local.run();
