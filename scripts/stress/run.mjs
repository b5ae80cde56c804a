#!/usr/bin/env node
// `npm run test:stress`: the long hardening runs, one after another, each in its own process group with a
// time limit (the whole stays under 10 minutes): the property tests with many more cases, the SIGKILL loop,
// the 100,000-entry listing, the load run, the symlink-swap races, and the TLS scan. Prints each step's output and a summary line;
// exit 1 when a step failed. Usage: node scripts/stress/run.mjs [step-name-filter...]
import { spawn } from 'node:child_process';

const root = new URL('../..', import.meta.url).pathname;
const tsx = ['--import', 'tsx'];
const STEPS = [
  { name: 'properties', cmd: process.execPath, args: [...tsx, 'test/hardening/input.test.ts'], env: { FERRY_FC_RUNS: '3000' }, limitS: 90 },
  // Every upload of its 'realpath checks only' half is synced to disk: 20 s on a quiet day, past 90 s on 12-07 when
  // the disk was slow (e2e-bundles took 2-3 times as long in the same runs).
  { name: 'confinement', cmd: process.execPath, args: [...tsx, 'test/hardening/confinement.test.ts'], env: { FERRY_FC_RUNS: '3000' }, limitS: 180 },
  { name: 'sigkill', cmd: process.execPath, args: [...tsx, 'scripts/stress/sigkill.ts', '20'], limitS: 120 },
  { name: 'dirlist', cmd: process.execPath, args: [...tsx, 'scripts/stress/dirlist.ts'], limitS: 90 },
  { name: 'load', cmd: process.execPath, args: [...tsx, 'scripts/stress/load.ts'], env: { FERRY_LOAD_SECONDS: process.env.FERRY_LOAD_SECONDS ?? '120' }, limitS: 210 },
  { name: 'swap-race', cmd: process.execPath, args: [...tsx, 'test/hardening/swap-race.test.ts'], env: { FERRY_RACE_SECONDS: '30' }, limitS: 60 },
  { name: 'symlink-race', cmd: process.execPath, args: [...tsx, 'scripts/stress/symlink-race.ts'], env: { FERRY_STRICT_RACE: '1' }, limitS: 30 },
  { name: 'tls-scan', cmd: 'bash', args: ['scripts/stress/tls-scan.sh'], limitS: 60, skipCode: 2 },
];

const filters = process.argv.slice(2);
const steps = STEPS.filter((s) => filters.length === 0 || filters.some((f) => s.name.includes(f)));

function run(step) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(step.cmd, step.args, { cwd: root, env: { ...process.env, NO_COLOR: '1', ...step.env }, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
    const timer = setTimeout(() => {
      console.log(`[stress] ${step.name} exceeded ${step.limitS} s and was killed`);
      try { process.kill(-child.pid, 'SIGKILL'); } catch {}
    }, step.limitS * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // Anything the step left behind in its process group goes too.
      try { process.kill(-child.pid, 'SIGKILL'); } catch {}
      const status = code === 0 ? 'ok' : step.skipCode !== undefined && code === step.skipCode ? 'skipped' : 'FAILED';
      resolve({ name: step.name, status, seconds: ((Date.now() - started) / 1000).toFixed(0), code, signal });
    });
  });
}

const results = [];
for (const step of steps) {
  console.log(`\n[stress] === ${step.name} (limit ${step.limitS} s)`);
  results.push(await run(step));
}
console.log(`\n[stress] ${results.map((r) => `${r.name} ${r.status} (${r.seconds} s)`).join(', ')}`);
process.exitCode = results.some((r) => r.status === 'FAILED') ? 1 : 0;
