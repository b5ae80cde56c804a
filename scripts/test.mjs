#!/usr/bin/env node
// Runs every test/**/*.test.ts file in its own Node process (through tsx), two at a time, each bounded in
// time; prints each file's output as a block, then a last line `N passed, N failed, N skipped` for the totals.
// A test that could not run here says so (test/skip.ts): it counts as skipped, never as passed, and its reason
// is listed before the totals. With FERRY_NO_SKIP set (CI), such a test fails instead.
// Usage: node scripts/test.mjs [substring filter...]
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { availableParallelism } from 'node:os';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);
const FILE_TIMEOUT_MS = Number(process.env.FERRY_TEST_TIMEOUT_MS ?? 180_000);

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : name.endsWith('.test.ts') ? [path] : [];
  });
}

const files = walk(join(root, 'test'))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();

const strip = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      out += `\n[test runner] ${file} exceeded ${FILE_TIMEOUT_MS} ms and was killed\n`;
      try { process.kill(-child.pid, 'SIGKILL'); } catch {}
    }, FILE_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const text = strip(out);
      const total = Number(/Total:\s+(\d+)/.exec(text)?.[1] ?? 0);
      // Tests that returned early because they could not run here (test/skip.ts): uvu counted them as passed.
      const reasons = [...text.matchAll(/^\[ferry-test-skipped\] (.*)$/gm)].map((m) => m[1]);
      const passed = Number(/Passed:\s+(\d+)/.exec(text)?.[1] ?? 0) - reasons.length;
      const skipped = Number(/Skipped:\s+(\d+)/.exec(text)?.[1] ?? 0) + reasons.length;
      let failed = total - passed - skipped;
      // A crash, a timeout or a file that ran no test counts as a failure of that file.
      if ((code !== 0 || signal) && failed === 0) failed = 1;
      if (total === 0 && failed === 0) failed = 1;
      resolve({ file, text, passed, failed, skipped, reasons, ms: Date.now() - started, code });
    });
  });
}

const results = [];
let next = 0;
const workers = Array.from({ length: Math.min(Number(process.env.FERRY_TEST_JOBS ?? availableParallelism()), 4) }, async () => {
  while (next < files.length) {
    const file = files[next++];
    const r = await runFile(file);
    results.push(r);
    const status = r.failed ? 'FAIL' : 'ok  ';
    const skips = r.skipped ? `, ${r.skipped} skipped` : '';
    process.stdout.write(`\n=== ${status} ${file} (${r.passed} passed, ${r.failed} failed${skips}, ${(r.ms / 1000).toFixed(1)} s)\n`);
    if (r.failed || process.env.FERRY_TEST_VERBOSE) process.stdout.write(r.text.trimEnd() + '\n');
  }
});
await Promise.all(workers);

const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
const skipped = results.reduce((n, r) => n + r.skipped, 0);
if (files.length === 0) console.log('no test files matched');
const skippedWhy = results.flatMap((r) => r.reasons.map((why) => `  ${r.file}: ${why}`));
if (skippedWhy.length > 0) console.log(`\nskipped (could not run here):\n${skippedWhy.join('\n')}`);
console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0;
