// `ferry serve --cert FILE --key FILE`: a certificate issued by a CA (a throwaway CA made here with openssl, as an
// operator would get one from Let's Encrypt: leaf + chain in one file) presented for the protocol and the page alike;
// a TLS client that trusts the CA verifies it by chain and host name, the ferry client pins its fingerprint; bad files
// stop the server with one line.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, runFerry, startServer, tempDir } from '../e2e/harness.ts';
import { testWhen } from '../skip.ts';

const t = suite('ferry serve --cert --key (a CA-issued certificate)');
const missing = () => (spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0 ? null : 'no openssl command');

function makeCa(dir: string): { ca: string; fullchain: string; key: string; otherKey: string } {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Ferry Test CA');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=files.test');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:files.test,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  run('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '1', '-extfile', 'ext.cnf');
  writeFileSync(join(dir, 'fullchain.pem'), readFileSync(join(dir, 'leaf.pem'), 'utf8') + readFileSync(join(dir, 'ca.pem'), 'utf8'));
  run('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'other.key');
  return { ca: join(dir, 'ca.pem'), fullchain: join(dir, 'fullchain.pem'), key: join(dir, 'leaf.key'), otherKey: join(dir, 'other.key') };
}

testWhen(t, missing, 'the protocol and the page present the CA-issued certificate; bad files stop the server with one line', async () => {
  const dir = tempDir('ferry-ca-');
  const home = tempDir('ferry-home-');
  try {
    const files = makeCa(dir);
    const leaf = new X509Certificate(readFileSync(join(dir, 'leaf.pem')));
    const fingerprint = `SHA256:${createHash('sha256').update(leaf.raw).digest('base64').replace(/=+$/, '')}`;
    const server = await startServer({ home, args: ['--cert', files.fullchain, '--key', files.key] });
    try {
      assert.is(server.fingerprint, fingerprint, 'the banner names the leaf certificate');
      assert.match(server.output(), /certificate .*fullchain\.pem \(for files\.test, localhost, 127\.0\.0\.1, issued by Ferry Test CA, valid until \d{4}-\d\d-\d\d\)/);
      assert.not.match(server.output(), /created a new TLS identity/);
      // A client that trusts the CA verifies chain and host name, for the page (ALPN http/1.1) and the protocol.
      for (const alpn of [['http/1.1'], ['ferry/1']]) {
        const verdict = await new Promise<{ authorized: boolean; error: string | null }>((resolve) => {
          const s = tls.connect({ host: '127.0.0.1', port: server.port, ca: readFileSync(files.ca), servername: 'files.test', ALPNProtocols: alpn }, () => {
            resolve({ authorized: s.authorized, error: s.authorizationError ? String(s.authorizationError) : null });
            s.destroy();
          });
          s.on('error', (e) => resolve({ authorized: false, error: e.message }));
        });
        assert.equal(verdict, { authorized: true, error: null }, `verified by the CA (${alpn[0]})`);
      }
      // The ferry client, pinning the fingerprint, works as with the self-signed identity.
      const r = await server.connect('carol', 'password-1', ['LIST'], { signup: true });
      assert.is(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`fingerprint ${fingerprint.replace(/[+/]/g, '\\$&')}`));
    } finally {
      await server.dispose();
    }
    const env = childEnv(home);
    const bad = async (args: string[], pattern: RegExp) => {
      const r = await runFerry(['serve', '--port', '0', '--data', join(dir, 'data'), ...args], { env, timeoutMs: 20_000 });
      assert.is(r.code, 1, r.stdout + r.stderr);
      assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
    };
    await bad(['--cert', files.fullchain, '--key', files.otherKey], /^ferry: Cannot use --cert '.*fullchain\.pem' with --key '.*other\.key': --key does not belong to the certificate in --cert/);
    await bad(['--cert', join(dir, 'nope.pem'), '--key', files.key], /^ferry: Cannot read --cert '.*nope\.pem': no such file/);
    await bad(['--cert', files.fullchain], /^ferry: --cert and --key go together/);
    await bad(['--cert', files.key, '--key', files.key], /^ferry: Cannot use --cert .*: --cert holds no PEM certificate/);
  } finally {
    cleanup(dir, home);
  }
});

t.run();
