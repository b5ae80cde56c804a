import { mkdtempSync, rmSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FreeSpace } from '../../src/server/free-space.ts';

const free = suite('server: free-space check');
const dir = mkdtempSync(join(tmpdir(), 'ferry-free-'));
free.after(() => rmSync(dir, { recursive: true, force: true }));

free('small uploads share one measurement and count each other off it', async () => {
  const space = new FreeSpace(dir, { maxAgeMs: 60_000 });
  const first = await space.claim(1000);
  assert.type(first, 'number');
  const s = await statfs(dir);
  assert.ok(Math.abs((first as number) - Number(s.bavail) * Number(s.bsize)) < 1 << 30, 'about what statfs says');
  assert.is(await space.claim(2000), (first as number) - 1000);
  assert.is(await space.claim(10), (first as number) - 3000);
});

free('a large upload measures afresh, and so does any upload once the measurement is old', async () => {
  // A fresh measurement is a whole number of blocks; one reused with small claims counted off is not.
  const block = Number((await statfs(dir)).bsize);
  const space = new FreeSpace(dir, { maxAgeMs: 60_000, exactBelow: 4096 });
  await space.claim(100);
  assert.is(((await space.claim(10)) as number) % block, block - 100, 'small: reused, 100 counted off');
  assert.is(((await space.claim(1 << 20)) as number) % block, 0, 'large: measured afresh');
  const stale = new FreeSpace(dir, { maxAgeMs: 0 });
  await stale.claim(10);
  assert.is(((await stale.claim(10)) as number) % block, 0, 'old measurement: measured afresh');
});

free.run();
