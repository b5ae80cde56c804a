#!/usr/bin/env node
// Smoke test across runtimes: the same source under Deno 2 against ferry on Node (dist/ferry, or the source
// through tsx when it is not built), both ways. Accounts made by `ferry user add` under Deno, a server on
// Deno with a Node client, a server on Node with a Deno client; random files uploaded and downloaded and
// checked by SHA-256 on both ends; the data directory is shared between runtimes.
// Usage: node scripts/smoke-deno.mjs   (or: deno task smoke)   FERRY_BIN=path picks the Node-side ferry.
// Last line: `N passed, N failed`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checks, cleanup, connect, denoFerry, env, expect, nodeFerry, PKG, randomFile, run, serve, sha256, tempDir } from './smoke-lib.mjs';

const deno = denoFerry();
const node = nodeFerry();
const work = tempDir('ferry-smoke-deno-');
const home = join(work, 'home');
const { check, done } = checks(`smoke: Deno (${deno.argv[0]}) <-> ${node.name} (${node.argv.at(-1)})`);

/** One round trip: upload a random file, list it, download it under another name; both hashes must match. */
async function roundTrip(server, client, { user, password, dataDir, name, bytes }) {
  const dir = tempDir('ferry-smoke-files-');
  try {
    const file = randomFile(join(dir, name), bytes);
    const r = await connect(client, server, {
      user,
      password,
      home,
      cwd: dir,
      commands: [`UPLD ${name} inbox/`, 'LIST inbox', `DWLD inbox/${name} back.bin`],
    });
    expect(r.code === 0, `${client.name} connect failed`, r);
    expect(r.stdout.includes(name), `LIST does not show ${name}`, r);
    const want = sha256(file);
    expect(sha256(join(dataDir, 'homes', user, 'inbox', name)) === want, 'the file stored by the server has another SHA-256', r);
    expect(sha256(join(dir, 'back.bin')) === want, 'the downloaded file has another SHA-256', r);
    expect((r.stdout.match(new RegExp(`sha256 verified: ${want}`, 'g')) ?? []).length === 2, 'the client did not report both transfers verified', r);
  } finally {
    cleanup(dir);
  }
}

try {
  await check(`deno runs src/main.ts: --version is ferry/${PKG.version}`, async () => {
    const r = await run(deno, ['--version'], { env: env(home) });
    expect(r.code === 0 && r.stdout.startsWith(`ferry/${PKG.version} `), 'unexpected --version', r);
  });

  const denoData = join(work, 'deno-data');
  let denoFingerprint = '';
  await check('user add under Deno (a password from FERRY_PASSWORD, real scrypt cost), user list under Node sees it', async () => {
    const add = await run(deno, ['user', 'add', 'dina', '--data', denoData, '--perms', 'list,download,upload,mkdir'], { env: env(home, { FERRY_PASSWORD: 'deno-password-1' }) });
    expect(add.code === 0, 'user add under Deno failed', add);
    const list = await run(node, ['user', 'list', '--data', denoData], { env: env(home) });
    expect(list.code === 0 && /dina/.test(list.stdout), 'user list under Node does not show dina', list);
    const users = JSON.parse(readFileSync(join(denoData, 'users.json'), 'utf8'));
    expect(JSON.stringify(users).includes('dina'), 'users.json has no dina');
  });

  await check('serve under Deno, connect from Node: upload, list, download, SHA-256 equal on both ends', async () => {
    const server = await serve(deno, { dataDir: denoData, home, args: ['--signup', 'closed'] });
    denoFingerprint = server.fingerprint;
    try {
      await roundTrip(server, node, { user: 'dina', password: 'deno-password-1', dataDir: denoData, name: 'from-node.bin', bytes: 3 * 1024 * 1024 + 17 });
    } finally {
      const stopped = await server.stop();
      expect(stopped.clean, `the Deno server did not stop cleanly on SIGTERM (exit ${stopped.code}, ${stopped.signal}): ${server.output()}`);
    }
  });

  await check('a data directory made under Deno serves under Node with the same TLS identity and users', async () => {
    const server = await serve(node, { dataDir: denoData, home, args: ['--signup', 'closed'] });
    try {
      expect(server.fingerprint === denoFingerprint, `fingerprint ${server.fingerprint} differs from Deno's ${denoFingerprint}`);
      const r = await connect(node, server, { user: 'dina', password: 'deno-password-1', home, commands: ['LIST inbox'] });
      expect(r.code === 0 && r.stdout.includes('from-node.bin'), 'the Node server does not show the file uploaded to Deno', r);
    } finally {
      await server.stop();
    }
  });

  const nodeData = join(work, 'node-data');
  await check('serve under Node, sign up and connect from Deno: upload, list, download, SHA-256 equal on both ends', async () => {
    const server = await serve(node, { dataDir: nodeData, home });
    try {
      const signup = await connect(deno, server, { user: 'nora', password: 'node-password-1', home, commands: ['MKDIR inbox'], signup: true });
      expect(signup.code === 0, 'sign-up from Deno failed', signup);
      await roundTrip(server, deno, { user: 'nora', password: 'node-password-1', dataDir: nodeData, name: 'from-deno.bin', bytes: 2 * 1024 * 1024 + 5 });
    } finally {
      await server.stop();
    }
  });

  await check('a Deno client refuses a server whose fingerprint is not the pinned one', async () => {
    const server = await serve(node, { dataDir: nodeData, home });
    try {
      const wrong = { ...server, fingerprint: denoFingerprint };
      const r = await connect(deno, wrong, { user: 'nora', password: 'node-password-1', home, commands: ['LIST'] });
      expect(r.code === 1 && /fingerprint/i.test(r.stderr), 'the Deno client did not refuse a mismatched fingerprint', r);
    } finally {
      await server.stop();
    }
  });
} finally {
  cleanup(work);
  done();
}
