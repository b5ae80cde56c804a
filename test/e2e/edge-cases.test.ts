import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cleanup, sha256File, startServer, tempDir, type ServerHandle } from './harness.ts';

const edge = suite('edge cases found in review');
let server: ServerHandle;
let work: string;

edge.before(async () => {
  server = await startServer();
  work = tempDir();
  const made = await server.connect('edgy', 'password1', ['LIST'], { signup: true });
  assert.is(made.code, 0, made.stderr);
});
edge.after(async () => {
  await server.dispose();
  cleanup(work);
});

edge('a directory of 600 files with long non-ASCII names lists completely', async () => {
  const home = join(server.dataDir, 'homes', 'edgy', 'cjk');
  mkdirSync(home, { recursive: true });
  for (let i = 0; i < 600; i++) writeFileSync(join(home, `${'文件名称'.repeat(12)}-${i}.txt`), 'x');
  const r = await server.connect('edgy', 'password1', ['LIST cjk']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /in 600 entries/);
});

edge('a 64 KB invalid path in the audit log does not break RDLOG', async () => {
  const bad = await server.connect('edgy', 'password1', [`DELF ${'../'.repeat(21_800)}x`]);
  assert.is(bad.code, 1);
  const r = await server.connect('edgy', 'password1', ['RDLOG']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /DELETE: .*failed \(invalid_path\)/);
});

edge('a local .ferry-part longer than the remote file is discarded and the download starts over', async () => {
  writeFileSync(join(work, 'small.txt'), 'small file');
  const up = await server.connect('edgy', 'password1', ['UPLD small.txt'], { cwd: work });
  assert.is(up.code, 0, up.stderr);
  const dest = join(work, 'got.txt');
  writeFileSync(dest + '.ferry-part', 'a stale partial that is longer than the remote file');
  const r = await server.connect('edgy', 'password1', [`DWLD small.txt ${dest}`], { cwd: work });
  assert.is(r.code, 0, r.stderr);
  assert.is(readFileSync(dest, 'utf8'), 'small file');
});

edge('a stale .ferry-part with the wrong bytes is caught by the hash and the file fetched again', async () => {
  writeFileSync(join(work, 'medium.bin'), Buffer.alloc(300_000, 3));
  const up = await server.connect('edgy', 'password1', ['UPLD medium.bin'], { cwd: work });
  assert.is(up.code, 0, up.stderr);
  const dest = join(work, 'medium-got.bin');
  writeFileSync(dest + '.ferry-part', Buffer.alloc(100_000, 9));
  const r = await server.connect('edgy', 'password1', [`DWLD medium.bin ${dest}`], { cwd: work });
  assert.is(r.code, 0, r.stderr);
  assert.is(sha256File(dest), sha256File(join(work, 'medium.bin')));
});

edge.run();
