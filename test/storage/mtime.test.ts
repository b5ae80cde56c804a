// Modification times survive exactly: what a `put` declares is what the committed entry says, and what
// stat, list and a download report afterwards, to the millisecond. (A time passed to utimes as a Date is
// divided into seconds and back; 1796228384741 came back as ...740.999 and was then reported as ...740.)
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from '../../src/client/mod.ts';
import { silentLog } from '../../src/server/console.ts';
import { FerryServer } from '../../src/server/server.ts';
import { LocalDiskDriver } from '../../src/storage/local/mod.ts';

process.env.FERRY_SCRYPT_N = '1024';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Times whose milliseconds do not survive a trip through seconds as a double (found by trying). */
const TIMES = [1796228384741, 1700000000123, 1234567890999, 1796228384001];

const t = suite('mtime: stored and reported to the millisecond');
let dir: string;

t.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-mtime-'));
});
t.after(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function listed(storage: ReturnType<LocalDiskDriver['forUser']>, name: string) {
  for await (const page of storage.list('')) for (const e of page) if (e.name === name) return e;
  return null;
}

for (const [label, options, size] of [
  ['a small upload (committed in one hop)', {}, 5],
  ['a large upload (streamed to its partial)', {}, 2 * 1024 * 1024],
  ['a small upload through the thread pool', { smallCommits: false }, 5],
] as const) {
  t(`${label}: commit, stat, list and openRead agree with the declared mtime`, async () => {
    const storage = new LocalDiskDriver(join(dir, label.replace(/\W+/g, '-')), options).forUser('alice');
    for (const [i, mtime] of TIMES.entries()) {
      const body = Buffer.alloc(size, i + 1);
      const name = `f${i}.bin`;
      const upload = await storage.createUpload(name, { size, mtime });
      await upload.write([body]);
      const entry = await upload.commit(sha(body));
      assert.is(entry.mtime, mtime, 'committed entry');
      assert.is((await storage.stat(name))?.mtime, mtime, 'stat');
      assert.is((await listed(storage, name))?.mtime, mtime, 'list');
      const handle = await storage.openRead(name);
      assert.is(handle.mtime, mtime, 'openRead');
      await handle.close();
    }
  });
}

t('a download sets the local file to the very mtime the server reports', async () => {
  const server = new FerryServer({ host: '127.0.0.1', port: 0, dataDir: join(dir, 'server') }, silentLog);
  const { port, fingerprint } = await server.start();
  const client = await connect({ host: '127.0.0.1', port, fingerprint: fingerprint as string, knownHosts: null });
  try {
    await client.signup('mtime_user', 'a-long-password');
    const local = join(dir, 'up.bin');
    writeFileSync(local, 'hello');
    const { utimesSync } = await import('node:fs');
    // Half a millisecond up: the local file's time floors to ...741 whatever the float does.
    utimesSync(local, 1796228384.7415, 1796228384.7415);
    assert.is(Math.floor(statSync(local).mtimeMs), 1796228384741);
    await client.upload(local, 'up.bin');
    const remote = await client.stat('up.bin');
    assert.is(remote.mtime, 1796228384741, 'the server keeps the time the upload declares');
    const back = join(dir, 'back.bin');
    await client.download('up.bin', back);
    assert.is(Math.floor(statSync(back).mtimeMs), remote.mtime, 'downloaded file');
  } finally {
    await client.quit();
    await server.stop();
  }
});

t.run();
