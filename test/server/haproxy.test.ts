// ferry serve behind a real HAProxy (Debian's 2.6, started by scripts/services/haproxy.sh on 127.0.0.1) with
// `send-proxy-v2` and PROXY health checks: the real ferry client signs up and reads its log through the balancer,
// and the client's own address and port — as HAProxy's log names them — are the ones in ferry's session line and in
// the audit log (RDLOG), not the balancer's; the health checks are neither refused nor logged as TLS failures.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, runFerry, startServer, tempDir } from '../e2e/harness.ts';
import { testWhen } from '../skip.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = join(ROOT, 'scripts/services/haproxy.sh');
const t = suite('ferry serve behind HAProxy (PROXY protocol v2)');
const missing = () => (spawnSync('sh', ['-c', 'command -v haproxy'], { stdio: 'ignore' }).status === 0 ? null : 'no haproxy: run `scripts/services/haproxy.sh install` as root');

testWhen(t, missing, 'the client\'s own address and port reach the session line and the audit log through the balancer', async () => {
  const server = await startServer({ args: ['--proxy-protocol', '127.0.0.1/32'] });
  const dir = tempDir('ferry-haproxy-');
  const ha = join(dir, 'ha');
  try {
    const started = execFileSync('bash', [SCRIPT, 'start', ha, String(server.port)], { encoding: 'utf8' });
    const port = Number(/HAPROXY_PORT=(\d+)/.exec(started)?.[1]);
    assert.ok(port > 0, started);
    await new Promise((r) => setTimeout(r, 1200)); // a health check or two (every 500 ms)
    const r = await runFerry(['connect', `127.0.0.1:${port}`, '--user', 'via_balancer', '--fingerprint', server.fingerprint, '--signup'], {
      input: 'LIST\nRDLOG\n',
      env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }),
      timeoutMs: 30_000,
    });
    assert.is(r.code, 0, r.stdout + r.stderr);
    // HAProxy logs a connection when it ends: the client's source address and port come first.
    const log = join(ha, 'haproxy.log');
    let clientPort: string | undefined;
    for (const deadline = Date.now() + 5000; clientPort === undefined && Date.now() < deadline; ) {
      clientPort = existsSync(log) ? /^127\.0\.0\.1:(\d+) \[/m.exec(readFileSync(log, 'utf8'))?.[1] : undefined;
      if (clientPort === undefined) await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(clientPort, readFileSync(log, 'utf8'));
    await server.waitFor(new RegExp(`\\[#\\d+ 127\\.0\\.0\\.1:${clientPort}\\] Connected`));
    assert.match(r.stdout, new RegExp(`Signed up user 'via_balancer' from 127\\.0\\.0\\.1:${clientPort}`), 'RDLOG names the real client');
    assert.not.match(server.output(), /\] refused:|TLS handshake failed/, server.output());
  } finally {
    execFileSync('bash', [SCRIPT, 'stop', ha]);
    await server.dispose();
    cleanup(dir);
  }
});

testWhen(t, missing, 'plain TCP (--insecure) through the balancer: the bytes after the PROXY header reach the session, at once; health checks are not logged', async () => {
  // readProxyHeader leaves the socket paused; a TLS socket resumed it, the plain session did not (a handshake time-out).
  const server = await startServer({ args: ['--insecure', '--proxy-protocol', '127.0.0.1/32'] });
  const dir = tempDir('ferry-haproxy-');
  const ha = join(dir, 'ha');
  try {
    const started = execFileSync('bash', [SCRIPT, 'start', ha, String(server.port)], { encoding: 'utf8' });
    const port = Number(/HAPROXY_PORT=(\d+)/.exec(started)?.[1]);
    await new Promise((r) => setTimeout(r, 1200));
    const begun = Date.now();
    const r = await runFerry(['connect', `127.0.0.1:${port}`, '--user', 'plain_user', '--insecure', '--signup'], {
      input: 'LIST\n',
      env: childEnv(server.home, { FERRY_PASSWORD: 'password1' }),
      timeoutMs: 30_000,
    });
    assert.is(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Total directory size: 0 bytes/);
    // Not after the balancer's 5 s wait for a TLS hello, nor the server's handshake time-out.
    assert.ok(Date.now() - begun < 4000, `took ${Date.now() - begun} ms`);
    await server.waitFor(/\[#\d+ 127\.0\.0\.1:\d+ plain_user\] Signed up user: plain_user/);
    // The balancer's health checks (every 500 ms) are not logged as connections, as they are not with TLS.
    const connected = () => (server.output().match(/\] Connected/g) ?? []).length;
    const seen = connected();
    await new Promise((r) => setTimeout(r, 1500));
    assert.is(connected(), seen, server.output());
  } finally {
    execFileSync('bash', [SCRIPT, 'stop', ha]);
    await server.dispose();
    cleanup(dir);
  }
});

t.run();
