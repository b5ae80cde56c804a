#!/usr/bin/env node
// The page against the CLI in one run (npm run bench:web): a file uploaded from the page in a real Chromium
// (headless, playwright-core) and the same file with `ferry connect`, to the same `ferry serve`, alternated, each run
// verified (the server's copy hashed), with the load average at the start of each; and the page's first load (bytes
// over the wire, time until the log-in form can be used). For scale, in the same runs, the two halves of the page's
// upload done by Chromium alone: the PUT of the file to a bare sink, and the page's SHA-256 of the file (its own
// hashing worker, fed as the page feeds it) with nothing sent.
//   node scripts/bench/web.mjs [--size 1024] [--runs 3] [--write] [--bin PATH] [--device-memory GiB]
// (MiB; --write updates docs/benchmarks.md; --device-memory tells the page that much memory (navigator.deviceMemory),
// as Chromium on a small device would: 0.5 makes it stream the hash of a 1 GiB file through hash-wasm, the way it
// hashes a file too large for memory, or any file over 128 MiB in a browser that does not say, such as Firefox.)
// Uses --bin (another build, for an A/B), else dist/ferry when it exists (npm run build), else the sources through tsx. Needs /usr/bin/chromium.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import https from 'node:https';
import { loadavg } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const SIZE_MIB = opt('size', 1024);
const RUNS = opt('runs', 3);
const WRITE = args.includes('--write');
const DEVICE_GIB = args.includes('--device-memory') ? opt('device-memory', NaN) : null;
if (DEVICE_GIB !== null && !(DEVICE_GIB > 0)) throw new Error('--device-memory takes a number of GiB, such as 0.5');
const BIN = args.includes('--bin') ? resolve(args[args.indexOf('--bin') + 1] ?? '') : null;
const FERRY = BIN ? [BIN] : existsSync(join(ROOT, 'dist/ferry')) ? [join(ROOT, 'dist/ferry')] : [process.execPath, '--import', 'tsx', join(ROOT, 'src/main.ts')];
const WORK = join(existsSync('/dev/shm') ? '/dev/shm' : '/tmp', `ferry-bench-web-${process.pid}`);
const log = (...a) => console.error('[bench:web]', ...a);
const children = new Set();
let browser = null;

async function cleanup() {
  await browser?.close().catch(() => {});
  for (const c of children) c.kill('SIGKILL');
  rmSync(WORK, { recursive: true, force: true });
}
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

const sha256File = (path) =>
  new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (d) => h.update(d)).on('end', () => res(h.digest('hex'))).on('error', rej);
  });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// CPU time (Linux /proc, in seconds) by whom: where an upload's time goes on these two shared vCPUs.
const TICK = 100; // clock ticks per second (USER_HZ)
function statOf(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' '); // fields from 3 on
    return { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / TICK, children: (Number(f[13]) + Number(f[14])) / TICK };
  } catch {
    return null;
  }
}
/** The CPU seconds of `root` and every process under it (Chromium's browser, renderers, network and GPU processes). */
function treeCpu(root, byType = null) {
  if (!existsSync('/proc/self/stat')) return NaN;
  const all = new Map();
  for (const name of readdirSync('/proc')) if (/^\d+$/.test(name)) {
    const st = statOf(name);
    if (st) all.set(Number(name), st);
  }
  let total = 0;
  const todo = [root];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    const st = all.get(pid);
    if (!st) continue;
    total += st.cpu;
    if (byType) {
      let type = 'browser';
      try {
        type = /--type=([a-z-]+)/.exec(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))?.[1] ?? 'browser';
      } catch {}
      byType[type] = (byType[type] ?? 0) + st.cpu;
    }
    for (const [child, cst] of all) if (cst.ppid === pid) todo.push(child);
  }
  return total;
}
/** The Chromium browser process of the profile in `dir`. */
function chromiumPid(dir) {
  for (const name of readdirSync('/proc')) if (/^\d+$/.test(name)) {
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (cmd.includes(`--user-data-dir=${dir}`) && !cmd.includes('--type=')) return Number(name);
    } catch {}
  }
  return null;
}
/** CPU seconds so far: the server, the browser, this process (the sink), its finished children (the CLI). */
function cpuNow(server, chrome) {
  const self = statOf('self');
  const types = {};
  const browser = chrome === null ? NaN : treeCpu(chrome, types);
  return { server: treeCpu(server.child.pid), browser, bench: self?.cpu ?? NaN, cli: self?.children ?? NaN, ...Object.fromEntries(Object.entries(types).map(([k, v]) => [`chromium ${k}`, v])) };
}
const cpuSince = (a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, (b[k] ?? 0) - a[k]]));

const cpuText = (cpu) => Object.entries(cpu).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');

async function startServer() {
  const data = join(WORK, 'data');
  const child = spawn(FERRY[0], [...FERRY.slice(1), 'serve', '--host', '127.0.0.1', '--port', '0', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FERRY_SCRYPT_N: '1024' } });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  for (const deadline = Date.now() + 30_000; !/fingerprint (SHA256:\S+)/.test(out); ) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`server did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, data, port: Number(/listening on .*:(\d+)/.exec(out)[1]), fingerprint: /fingerprint (SHA256:\S+)/.exec(out)[1], output: () => out };
}

function cli(server, input, extra = []) {
  return new Promise((res) => {
    const started = performance.now();
    const child = spawn(FERRY[0], [...FERRY.slice(1), 'connect', `127.0.0.1:${server.port}`, '--user', 'bench', '--fingerprint', server.fingerprint, ...extra], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, FERRY_PASSWORD: 'bench-password', FERRY_HOME: join(WORK, 'home') },
    });
    children.add(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      children.delete(child);
      res({ code, out, ms: performance.now() - started });
    });
    child.stdin.end(input);
  });
}

/**
 * The page's SHA-256 of `file` alone, nothing sent: its own hashing worker (the one the page's script names), asked as
 * the page asks it (upload.ts and hasher.ts): for a file that fits in memory (fitsWhole), the whole file at once (the
 * browser's native SHA-256); else fed as the page feeds it (the file read by a BYOB reader in 8 MiB buffers, each
 * transferred to the worker, at most three not yet hashed), then the digest asked for. The file is given to a hidden
 * input added to the page. Says which way it went (`how`: 'whole' or 'streamed').
 */
async function hashAlone(page, file) {
  await page.evaluate(() => {
    if (globalThis.document.getElementById('bench-hash-file')) return;
    const input = globalThis.document.createElement('input');
    Object.assign(input, { type: 'file', id: 'bench-hash-file', hidden: true });
    globalThis.document.body.append(input);
  });
  await page.setInputFiles('#bench-hash-file', file);
  return page.evaluate(async () => {
    const doc = globalThis.document;
    const script = await (await fetch(doc.querySelector('script[type="module"][src]').src)).text();
    const url = /\/assets\/hash-[0-9a-f]+\.js/.exec(script)?.[0];
    if (!url) throw new Error("the page's script names no hashing worker");
    const f = doc.getElementById('bench-hash-file').files[0];
    const CHUNK = 8 * 1024 * 1024;
    const DEPTH = 3;
    const worker = new Worker(url);
    let done = 0;
    let wake = () => {};
    let hex = null;
    worker.onmessage = (e) => {
      if (e.data.t === 'done') done++;
      else if (e.data.t === 'digest') hex = e.data.hex;
      else hex = `error: ${e.data.message}`;
      wake();
    };
    const changed = () => new Promise((r) => (wake = r));
    const t = performance.now();
    if (globalThis.crypto?.subtle !== undefined && f.size * 2 <= ((globalThis.navigator.deviceMemory ?? 2) * 1024 ** 3) / 4) {
      worker.postMessage({ t: 'whole', id: 1, seq: 1, blob: f });
      while (hex === null) await changed();
      const ms = performance.now() - t;
      worker.terminate();
      return { hex, ms, how: 'whole' };
    }
    const reader = f.stream().getReader({ mode: 'byob' });
    let sent = 0;
    for (let at = 0; at < f.size; ) {
      const want = Math.min(CHUNK, f.size - at);
      let buffer = new ArrayBuffer(want);
      let filled = 0;
      while (filled < want) {
        const { done: end, value } = await reader.read(new Uint8Array(buffer, filled, want - filled));
        buffer = value.buffer;
        if (end) break;
        filled += value.byteLength;
      }
      if (filled === 0) break;
      worker.postMessage({ t: 'update', id: 1, bytes: buffer }, [buffer]);
      sent++;
      at += filled;
      while (sent - done >= DEPTH) await changed();
    }
    worker.postMessage({ t: 'peek', id: 1, seq: 1 });
    while (hex === null) await changed();
    const ms = performance.now() - t;
    worker.terminate();
    return { hex, ms, how: 'streamed' };
  });
}

async function main() {
  const idle = loadavg();
  mkdirSync(WORK, { recursive: true });
  const file = join(WORK, 'big.bin');
  log(`making a ${SIZE_MIB} MiB file of random bytes`);
  const fd = openSync(file, 'w');
  for (let i = 0; i < SIZE_MIB; i++) writeSync(fd, randomBytes(1024 * 1024));
  closeSync(fd);
  const want = await sha256File(file);
  const server = await startServer();
  const signed = await cli(server, 'LIST\n', ['--signup']);
  if (signed.code !== 0) throw new Error(`sign-up failed: ${signed.out}`);

  // The page's first load, in a fresh browser profile: bytes over the wire (CDP), time until the form is usable.
  const spki = createHash('sha256')
    .update(new (await import('node:crypto')).X509Certificate(readFileSync(join(server.data, 'identity/cert.pem'))).publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
  browser = await chromium.launchPersistentContext(join(WORK, 'profile'), {
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${spki}`],
  });
  if (DEVICE_GIB !== null) await browser.addInitScript((gib) => Object.defineProperty(navigator, 'deviceMemory', { value: gib }), DEVICE_GIB);
  const page = await browser.newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  let wire = 0;
  let requests = 0;
  cdp.on('Network.loadingFinished', (e) => ((wire += e.encodedDataLength), requests++));
  const t0 = performance.now();
  await page.goto(`https://127.0.0.1:${server.port}/`);
  await page.waitForSelector('#user:focus');
  const interactiveMs = performance.now() - t0;
  // What the first load fetched: counted until the network has been quiet for a moment, then no more (the uploads'
  // requests and the hash worker's are not part of it).
  await page.waitForLoadState('networkidle', { timeout: 10_000 }).catch(() => {});
  cdp.removeAllListeners('Network.loadingFinished');
  const firstLoad = { wire, requests };
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: false });
  await page.fill('#user', 'bench');
  await page.fill('#password', 'bench-password');
  await page.getByRole('button', { name: 'Log in', exact: true }).click();
  await page.waitForSelector('text=Total directory size');

  // What the browser alone costs here: the same file PUT by XMLHttpRequest (as the page does) to a bare HTTPS sink in
  // this process (the server's key, so the same pin), which only counts the bytes — no hashing, nothing stored.
  const sink = https.createServer({ key: readFileSync(join(server.data, 'identity/key.pem')), cert: readFileSync(join(server.data, 'identity/cert.pem')) }, (req, res) => {
    if (req.method !== 'PUT') return void res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><input type="file" id="f">');
    let n = 0;
    req.on('data', (d) => (n += d.length));
    req.on('end', () => res.writeHead(n === SIZE_MIB * 1024 * 1024 ? 204 : 400).end());
  });
  await new Promise((r) => sink.listen(0, '127.0.0.1', r));
  const bare = await browser.newPage();
  await bare.goto(`https://127.0.0.1:${sink.address().port}/`);

  const rows = [];
  const stored = join(server.data, 'homes/bench/big.bin');
  const chrome = chromiumPid(join(WORK, 'profile'));
  let hashHow = '';
  for (let run = 0; run < RUNS; run++) {
    for (const how of ['cli', 'page', 'sink', 'hash']) {
      rmSync(stored, { force: true });
      const load = loadavg()[0];
      const before = cpuNow(server, chrome);
      let ms;
      if (how === 'cli') {
        const r = await cli(server, `PUT ${file} big.bin\n`);
        if (r.code !== 0 || !/sha256 verified/.test(r.out)) throw new Error(`CLI upload failed: ${r.out.slice(-500)}`);
        ms = r.ms;
      } else if (how === 'hash') {
        const r = await hashAlone(page, file);
        hashHow = r.how;
        if (r.hex !== want) throw new Error(`the page's hashing worker computed ${r.hex}, the file's SHA-256 is ${want}`);
        ms = r.ms;
        const cpu = cpuSince(before, cpuNow(server, chrome));
        rows.push({ how, ms, load, cpu });
        log(`${how} run ${run + 1}: ${(ms / 1000).toFixed(2)} s (${((SIZE_MIB * 1000) / ms).toFixed(0)} MiB/s), load ${load.toFixed(2)}, CPU s ${cpuText(cpu)}, digest right`);
        continue;
      } else if (how === 'sink') {
        await bare.setInputFiles('#f', file);
        const r = await bare.evaluate(
          () =>
            new Promise((done) => {
              const x = new XMLHttpRequest();
              const t = performance.now();
              x.onloadend = () => done({ status: x.status, ms: performance.now() - t });
              x.open('PUT', '/sink');
              x.send(globalThis.document.getElementById('f').files[0]);
            }),
        );
        if (r.status !== 204) throw new Error(`the bare sink got a short body (HTTP ${r.status})`);
        ms = r.ms;
        const cpu = cpuSince(before, cpuNow(server, chrome));
        rows.push({ how, ms, load, cpu });
        log(`${how} run ${run + 1}: ${(ms / 1000).toFixed(2)} s (${((SIZE_MIB * 1000) / ms).toFixed(0)} MiB/s), load ${load.toFixed(2)}, CPU s ${cpuText(cpu)}`);
        continue;
      } else {
        await page.getByRole('button', { name: 'Refresh' }).click();
        // The status line still says how the last upload ended: clear it, so that the wait below sees this one's.
        await page.evaluate(() => {
          const el = globalThis.document.querySelector('.status');
          if (el) el.textContent = '';
        });
        const started = performance.now();
        await page.setInputFiles('#pick-files', file);
        await page.waitForSelector('text=/\\d+ of \\d+ files? uploaded/', { timeout: 600_000 });
        ms = performance.now() - started;
        const status = await page.textContent('.status');
        if (!/1 of 1 file uploaded/.test(status ?? '')) throw new Error(`page upload failed: ${status}`);
      }
      const cpu = cpuSince(before, cpuNow(server, chrome));
      const got = await sha256File(stored);
      if (got !== want) throw new Error(`${how}: the stored file's SHA-256 differs`);
      rows.push({ how, ms, load, cpu });
      log(`${how} run ${run + 1}: ${(ms / 1000).toFixed(2)} s (${((SIZE_MIB * 1000) / ms).toFixed(0)} MiB/s), load ${load.toFixed(2)}, CPU s ${cpuText(cpu)}, verified`);
    }
  }
  await browser.close();
  browser = null;
  sink.close();
  server.child.kill('SIGTERM');

  const of = (how) => rows.filter((r) => r.how === how);
  const line = (how, label) => {
    const ms = of(how).map((r) => r.ms);
    const rate = (SIZE_MIB * 1000) / median(ms);
    return `| ${label} | ${ms.length} | ${(median(ms) / 1000).toFixed(2)} | ${(Math.min(...ms) / 1000).toFixed(2)}–${(Math.max(...ms) / 1000).toFixed(2)} | ${rate.toFixed(0)} | ${of(how).map((r) => r.load.toFixed(2)).join(', ')} |`;
  };
  const ratio = median(of('cli').map((r) => r.ms)) / median(of('page').map((r) => r.ms));
  const cpuCell = (how, k) => median(of(how).map((r) => r.cpu[k])).toFixed(2);
  const cliMs = median(of('cli').map((r) => r.ms));
  const floorCpu = Number(cpuCell('sink', 'browser')) + Number(cpuCell('hash', 'browser')) + Number(cpuCell('cli', 'server'));
  const bound = cliMs / 1000 / (floorCpu / 2);
  const cpuLine = (how, label) => `| ${label} | ${cpuCell(how, 'server')} | ${cpuCell(how, 'browser')} | ${cpuCell(how, 'cli')} | ${cpuCell(how, 'bench')} | ${(median(of(how).map((r) => r.cpu.server + r.cpu.browser + r.cpu.cli + r.cpu.bench))).toFixed(2)} | ${(median(of(how).map((r) => r.ms)) / 1000 * 2).toFixed(2)} |`;
  const when = new Date().toISOString().replace(/:\d\d\.\d+Z$/, 'Z');
  const text = [
    `Measured ${when} by \`node scripts/bench/web.mjs --size ${SIZE_MIB} --runs ${RUNS}${DEVICE_GIB !== null ? ` --device-memory ${DEVICE_GIB}` : ''}\`, ${BIN ? `--bin ${BIN}` : FERRY[0].endsWith('dist/ferry') ? 'dist/ferry' : 'the sources (tsx)'}, server and browser on the same 2 vCPUs, loopback, files in /dev/shm. Load average before the benchmark started: ${idle.map((l) => l.toFixed(2)).join(', ')} (1, 5, 15 min); during it the load rises with the runs themselves, each of which keeps both vCPUs busy for seconds.`,
    '',
    `| upload of ${SIZE_MIB} MiB | runs (alternated) | median s | min–max s | MiB/s (median) | load average at start |`,
    '|---|---|---|---|---|---|',
    line('cli', '`ferry connect` PUT'),
    line('page', `the page in Chromium (hashing in the page included${DEVICE_GIB !== null ? `; told the device has ${DEVICE_GIB} GiB, so it ${hashHow === 'whole' ? 'still hashes the file whole' : 'streams the hash'}` : ''})`),
    line('sink', 'for scale: Chromium alone, the same PUT to a bare HTTPS sink (no hashing, nothing stored)'),
    line('hash', `for scale: Chromium alone, the page's SHA-256 of the file (its hashing worker, ${hashHow === 'whole' ? 'the whole file at once, native' : 'streamed through hash-wasm'}; nothing sent)`),
    '',
    `The page's rate ÷ the CLI's: ${ratio.toFixed(2)} (the target is at least 0.5).`,
    '',
    `What this machine allows, estimated from the same runs (medians): the page's upload needs about the CPU of its parts done alone — Chromium's PUT (${cpuCell('sink', 'browser')} s), the page's SHA-256 (${cpuCell('hash', 'browser')} s) and ferry serve receiving the same bytes (${cpuCell('cli', 'server')} s in the CLI's upload) — ${floorCpu.toFixed(2)} s, which two vCPUs get through in ${(floorCpu / 2).toFixed(2)} s at best: a rate ÷ the CLI's of about ${(cliMs / 1000).toFixed(2)} ÷ ${(floorCpu / 2).toFixed(2)} = ${bound.toFixed(2)} at most. (An estimate, not a strict bound: a process paced by others spends somewhat less CPU per byte than one running flat out.)`,
    '',
    'Where the time goes: CPU seconds used during each upload (medians of the runs; Linux /proc, the process and everything under it), against what two vCPUs give in its wall time.',
    '',
    '| upload | ferry serve | Chromium (all its processes) | `ferry connect` | bench process (the sink) | total | 2 vCPUs × wall |',
    '|---|---|---|---|---|---|---|',
    cpuLine('cli', '`ferry connect` PUT'),
    cpuLine('page', 'the page'),
    cpuLine('sink', 'Chromium to the bare sink'),
    cpuLine('hash', "Chromium's SHA-256 alone"),
    '',
    `First load of the page (fresh profile, cache off): ${firstLoad.requests} requests, ${(firstLoad.wire / 1024).toFixed(1)} KiB over the wire (TLS framing not counted), log-in form usable after ${interactiveMs.toFixed(0)} ms.`,
  ].join('\n');
  console.log(text);
  if (WRITE) {
    const doc = join(ROOT, 'docs/benchmarks.md');
    let md = readFileSync(doc, 'utf8');
    const mark = DEVICE_GIB === null ? 'bench-web' : 'bench-web-device-memory';
    const begin = `<!-- ${mark}:begin -->`;
    const end = `<!-- ${mark}:end -->`;
    if (!md.includes(begin)) md += `\n## The page against the CLI${DEVICE_GIB === null ? '' : ', on a device that says it has little memory'}\n\n${begin}\n${end}\n`;
    md = md.replace(new RegExp(`${begin}[\\s\\S]*?${end}`), `${begin}\n${text}\n${end}`);
    writeFileSync(doc, md);
    log('wrote docs/benchmarks.md');
  }
}

main()
  .catch((err) => {
    console.error(`bench:web: ${err.message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup().then(() => process.exit()));
