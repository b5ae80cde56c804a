#!/usr/bin/env node
// What the pieces of a large transfer cost in Node on this machine, without ferry: the floor under ferry's own
// figures. Per GiB: AES-128-GCM through node:crypto (in 1 MiB and 16 KiB calls), SHA-256, and a bare TLS 1.3
// connection on loopback (client writes 1 MiB buffers, server reads and drops them) with each side's CPU.
//
//   node scripts/bench/floors.mjs            (run it with the Node that ferry embeds for the figures that matter:
//   node_modules/.cache/ferry-build/node-v*/bin/node scripts/bench/floors.mjs    after `npm run build`)
//
// Needs the openssl command (for a throwaway certificate). Prints one line per measurement; `--runs N` (default 3).
import { execFileSync, fork } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

const MiB = 1 << 20;
const GiB = 1024 * MiB;
const self = fileURLToPath(import.meta.url);
const [role, arg] = process.argv.slice(2);
const cpuMs = (c) => (c.user + c.system) / 1000;

if (role === 'tls-server') {
  const dir = arg;
  const server = tls.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')), minVersion: 'TLSv1.3', ciphersuites: 'TLS_AES_128_GCM_SHA256' }, (socket) => {
    let bytes = 0;
    const c0 = process.cpuUsage();
    socket.on('data', (d) => (bytes += d.length));
    socket.on('end', () => {
      process.send({ bytes, cpuMs: cpuMs(process.cpuUsage(c0)) });
      socket.end();
      server.close();
    });
  });
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
} else if (role === 'tls-client') {
  const buf = Buffer.alloc(MiB, 7);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const socket = tls.connect({ port: Number(arg), host: '127.0.0.1', rejectUnauthorized: false, ciphersuites: 'TLS_AES_128_GCM_SHA256' }, () => {
    let sent = 0;
    const pump = () => {
      while (sent < GiB) {
        sent += buf.length;
        if (!socket.write(buf)) return void socket.once('drain', pump);
      }
      socket.end();
    };
    pump();
  });
  socket.resume();
  socket.on('close', () => {
    process.send({ wallMs: performance.now() - t0, cpuMs: cpuMs(process.cpuUsage(c0)) });
    process.exit(0);
  });
} else {
  const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 3;
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const timed = (f) => {
    const c0 = process.cpuUsage();
    f();
    return cpuMs(process.cpuUsage(c0));
  };
  const seal = (size) => () => {
    const key = randomBytes(16);
    const data = randomBytes(size);
    const iv = Buffer.alloc(12);
    for (let i = 0; i < GiB / size; i++) {
      iv.writeUInt32BE(i, 8);
      const c = createCipheriv('aes-128-gcm', key, iv);
      c.update(data);
      c.final();
      c.getAuthTag();
    }
  };
  const sha = () => {
    const data = randomBytes(MiB);
    const h = createHash('sha256');
    for (let i = 0; i < 1024; i++) h.update(data);
    h.digest();
  };
  const report = (name, xs) => console.log(`${name}: median ${median(xs).toFixed(0)} ms CPU per GiB (${xs.map((x) => x.toFixed(0)).join(', ')})`);
  console.log(`Node ${process.version}, ${runs} runs each`);
  report('AES-128-GCM seal, node:crypto, 1 MiB per call', Array.from({ length: runs }, () => timed(seal(MiB))));
  report('AES-128-GCM seal, node:crypto, 16 KiB per call', Array.from({ length: runs }, () => timed(seal(16 * 1024))));
  report('SHA-256, node:crypto, 1 MiB updates', Array.from({ length: runs }, () => timed(sha)));

  const dir = mkdtempSync(join(tmpdir(), 'ferry-floors-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=floors', '-days', '1'], { stdio: 'ignore' });
    const tlsRuns = [];
    for (let i = 0; i < runs; i++) tlsRuns.push(await tlsOnce(dir));
    const pick = (k) => tlsRuns.map((r) => r[k]);
    console.log(
      `TLS 1.3 AES-128-GCM, 1 GiB over loopback: wall median ${median(pick('wallMs')).toFixed(0)} ms; sender CPU median ${median(pick('clientCpu')).toFixed(0)} ms (${pick('clientCpu').map((x) => x.toFixed(0)).join(', ')}), receiver CPU median ${median(pick('serverCpu')).toFixed(0)} ms (${pick('serverCpu').map((x) => x.toFixed(0)).join(', ')})`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One bare TLS transfer of 1 GiB between two child processes (each bounded: 60 s). */
function tlsOnce(dir) {
  return new Promise((resolve, reject) => {
    const server = fork(self, ['tls-server', dir]);
    let client = null;
    const timer = setTimeout(() => {
      server.kill();
      client?.kill();
      reject(new Error('TLS floor run took over 60 s'));
    }, 60_000);
    let clientResult = null;
    let serverResult = null;
    const done = () => {
      if (!clientResult || !serverResult) return;
      clearTimeout(timer);
      if (serverResult.bytes !== GiB) return reject(new Error(`server received ${serverResult.bytes} bytes`));
      resolve({ wallMs: clientResult.wallMs, clientCpu: clientResult.cpuMs, serverCpu: serverResult.cpuMs });
    };
    server.on('message', (m) => {
      if (m.port) {
        client = fork(self, ['tls-client', String(m.port)]);
        client.on('message', (c) => {
          clientResult = c;
          done();
        });
      } else {
        serverResult = m;
        done();
      }
    });
  });
}
