// What one file-system call costs in Node: awaited through the thread pool (fs/promises), synchronous, in
// parallel (8 in flight), and as a round trip to a worker thread that makes the synchronous call. The figure
// behind the small-file work in docs/benchmarks.md. Usage: node scripts/bench/fs-hop.mjs
import { lstatSync, rmSync, writeFileSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

const file = join(process.env.FERRY_HOP_DIR ?? (process.platform === 'linux' ? '/dev/shm' : tmpdir()), `ferry-hop-${process.pid}`);
writeFileSync(file, 'x');
const N = 20_000;
const per = (t) => `${(((performance.now() - t) * 1000) / N).toFixed(1)} µs`;
let t = performance.now();
for (let i = 0; i < N; i++) await lstat(file);
console.log(`fs/promises lstat, one at a time: ${per(t)} per call`);
t = performance.now();
for (let i = 0; i < N; i++) lstatSync(file);
console.log(`lstatSync:                        ${per(t)} per call`);
t = performance.now();
for (let i = 0; i < N / 8; i++) await Promise.all(Array.from({ length: 8 }, () => lstat(file)));
console.log(`fs/promises lstat, 8 in flight:   ${per(t)} per call`);
const worker = new Worker(
  `const { parentPort } = require('node:worker_threads'); const fs = require('node:fs');
   parentPort.on('message', (p) => { fs.lstatSync(p); parentPort.postMessage(1); });`,
  { eval: true },
);
const ask = () => new Promise((resolve) => { worker.once('message', resolve); worker.postMessage(file); });
await ask();
t = performance.now();
for (let i = 0; i < N; i++) await ask();
console.log(`worker round trip with lstatSync: ${per(t)} per call`);
await worker.terminate();
rmSync(file);
