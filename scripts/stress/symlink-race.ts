// A program *on the server* flips a directory in a home between a real directory and a symlink to outside,
// as fast as it can, while the driver uploads into it. With directories pinned through /proc/self/fd (Linux)
// no upload may land outside; FERRY_NO_PIN=1 turns pinning off to show the race the pinning closes.
// Prints how many files landed outside in 8 s; exits 1 if any did and FERRY_STRICT_RACE=1.
// Usage: node --import tsx scripts/stress/symlink-race.ts
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalDiskDriver } from '../../src/storage/local/mod.ts';
const root = mkdtempSync(join(tmpdir(), 'ferry-race-'));
const outside = join(root, 'outside');
mkdirSync(outside);
const home = join(root, 'data', 'homes', 'a');
mkdirSync(join(home, 'd'), { recursive: true });
symlinkSync(outside, join(home, 'evil'));
const s = new LocalDiskDriver(join(root, 'data'), process.env.FERRY_NO_PIN === '1' ? { pinDirectories: false } : {}).forUser('a');
const body = Buffer.from('x');
const digest = createHash('sha256').update(body).digest('hex');
let stop = false;
// The swapper: a local program flips d between a real directory and a symlink to outside.
void (async () => {
  mkdirSync(join(home, 'realdir'));
  while (!stop) {
    try { renameSync(join(home, 'd'), join(home, 'realdir2')); renameSync(join(home, 'evil'), join(home, 'd')); } catch {}
    await new Promise((r) => setImmediate(r));
    try { renameSync(join(home, 'd'), join(home, 'evil')); renameSync(join(home, 'realdir2'), join(home, 'd')); } catch {}
    await new Promise((r) => setImmediate(r));
  }
})();
let ok = 0, refused = 0;
const t = Date.now();
while (Date.now() - t < 8000) {
  try {
    // Every other one as the server makes small uploads: checked only as the worker places it (deferChecks).
    const up = await s.createUpload(`d/f${ok + refused}`, { size: 1, deferChecks: (ok + refused) % 2 === 0 });
    await up.write([body]);
    await up.commit(digest);
    ok++;
  } catch { refused++; }

}
stop = true;
const filesOutside = readdirSync(outside).length;
console.log(`symlink-race: ${JSON.stringify({ seconds: 8, committed: ok, refused, filesOutside })}${filesOutside ? ' (files written outside the home)' : ''}`);
if (filesOutside && process.env.FERRY_STRICT_RACE === '1') process.exitCode = 1;
rmSync(root, { recursive: true, force: true });
