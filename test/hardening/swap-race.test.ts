// A directory swapped for a symlink between the driver's check and its use. A worker thread (a stand-in for a
// local program with write access to the home) flips `d` between a real directory and a symlink to a directory
// outside the home, as fast as it can, while every storage operation runs on paths under `d`. With directories
// pinned through /proc/self/fd nothing outside may be written, removed, renamed, read, listed or stat'ed.
// Where pinning is not available (not Linux), the test says so and checks nothing: the race is open there.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FerryError } from '../../src/core/errors.ts';
import { canPinDirectories, LocalDiskDriver } from '../../src/storage/local/mod.ts';
import { skip } from '../skip.ts';

const SECONDS = Number(process.env.FERRY_RACE_SECONDS ?? 3);
const LOOPS = 6;
const SECRET = 'SECRET-OUTSIDE';
const PAYLOAD = Buffer.from('from-a-client');
const PAYLOAD_SHA = createHash('sha256').update(PAYLOAD).digest('hex');

// Flips home/d: a real directory <-> a symlink to outside. Runs until told to stop.
const SWAPPER = `
const { renameSync } = require('node:fs');
const { parentPort, workerData: { home } } = require('node:worker_threads');
let stop = false;
parentPort.on('message', () => { stop = true; });
const flip = (a, b) => { try { renameSync(home + '/' + a, home + '/' + b); } catch {} };
const loop = () => {
  for (let i = 0; i < 200 && !stop; i++) {
    flip('d', 'real-d'); flip('evil', 'd');
    flip('d', 'evil'); flip('real-d', 'd');
  }
  if (stop) { parentPort.postMessage('stopped'); return; }
  setImmediate(loop);
};
loop();
`;

/** Names and contents of everything under `dir`. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) {
        out.push(`${rel}${entry.name}/`);
        walk(path, `${rel}${entry.name}/`);
      } else out.push(`${rel}${entry.name} ${readFileSync(path, 'utf8')}`);
    }
  };
  walk(dir, '');
  return out.sort();
}

const race = suite('hardening: a directory swapped for a symlink mid-operation');

race('no operation under a flipping directory reaches outside the home', async () => {
  if (!(await canPinDirectories())) return skip('/proc/self/fd does not name opened directories here; the race is open on this platform');
  const root = mkdtempSync(join(tmpdir(), 'ferry-swap-race-'));
  const outside = join(root, 'outside');
  const home = join(root, 'data', 'homes', 'a');
  mkdirSync(join(outside, 'sub'), { recursive: true });
  for (const name of ['secret.txt', 'f0', 'g0', 'sub/inner.txt']) writeFileSync(join(outside, name), SECRET);
  mkdirSync(join(home, 'd', 'sub'), { recursive: true });
  writeFileSync(join(home, 'd', 'sub', 'inner.txt'), 'inside');
  symlinkSync(outside, join(home, 'evil'));
  const before = snapshot(outside);
  const storage = new LocalDiskDriver(join(root, 'data')).forUser('a');

  const worker = new Worker(SWAPPER, { eval: true, workerData: { home } });
  const counts = { ok: 0, refused: 0 };
  const leaks: string[] = [];
  try {
    const until = Date.now() + SECONDS * 1000;
    // Several loops at once, so that operations overlap in the thread pool as they do under load.
    const loop = async (start: number): Promise<void> => {
      for (let i = start; Date.now() < until; i++) {
        const n = i % 50;
        try {
          switch (i % 12) {
            case 0: {
              // With and without parents; every other pair the server's way for small uploads (deferChecks:
              // checked only as the worker places the file).
              const k = Math.floor(i / 12);
              const up = await storage.createUpload(`d/f${n}`, { size: PAYLOAD.length, overwrite: true, parents: k % 2 === 0, deferChecks: (k >> 1) % 2 === 0 });
              await up.write([PAYLOAD]);
              await up.commit(PAYLOAD_SHA);
              break;
            }
            case 2:
              await storage.mkdir(i % 4 === 0 ? `d/m${n}` : `d/p${n}/q`, { parents: i % 4 !== 0 });
              break;
            case 3:
              await storage.rename(`d/f${n}`, `d/g${n}`, { overwrite: true });
              break;
            case 4:
              await storage.remove(i % 2 === 0 ? `d/g${n}` : `d/f${n}`);
              break;
            case 5: {
              const handle = await storage.openRead(i % 2 === 0 ? 'd/secret.txt' : 'd/sub/inner.txt');
              const bytes = (await handle.read(0, 100)).toString();
              await handle.close();
              if (bytes === SECRET) leaks.push(`read ${SECRET}`);
              break;
            }
            case 6:
              for await (const page of storage.list(i % 2 === 0 ? 'd' : 'd/sub')) {
                for (const entry of page) if (entry.name === 'secret.txt') leaks.push('listed secret.txt');
              }
              break;
            case 7:
              if ((await storage.stat('d/secret.txt')) !== null) leaks.push("stat'ed secret.txt");
              break;
            case 8:
              await storage.usage();
              break;
            case 9:
              await storage.mkdir(`d/m${n}`);
              break;
            case 10:
              await storage.rename(`d/m${n}`, `d/n${n}`);
              break;
            case 11:
              await storage.remove(`d/n${n}`);
              break;
          }
          counts.ok++;
        } catch (err) {
          if (!(err instanceof FerryError)) throw err;
          counts.refused++;
        }
      }
    };
    await Promise.all(Array.from({ length: LOOPS }, (_, k) => loop(k * 1000)));
  } finally {
    const stopped = new Promise((resolve) => worker.once('message', resolve));
    worker.postMessage('stop');
    await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 2000))]);
    await worker.terminate();
  }
  const after = snapshot(outside);
  rmSync(root, { recursive: true, force: true });
  console.log(`  swap-race: ${JSON.stringify({ seconds: SECONDS, ...counts, leaks: leaks.length })}`);
  assert.ok(counts.ok > 0, 'some operations succeeded between the flips');
  assert.equal(leaks, [], 'nothing outside was read, listed or stat\'ed');
  assert.equal(after, before, 'nothing outside was written, removed or renamed');
});

race.run();
