// The ferry client trusts a server by certificate authority and host name as well as by fingerprint: a throwaway CA
// made here with openssl stands for Let's Encrypt (or a company CA given with --ca). With the real CLI as child
// processes, on one port restarted with different certificates: first contact with no fingerprint, a renewal (new
// key, same CA), a certificate of the same CA for another name, the self-signed default (a downgrade), an unknown
// server without --ca, a wrong pin, `ferry batch` with `ca:` and no `fingerprint:`, FERRY_CA, and a missing --ca file.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { childEnv, cleanup, runFerry, startServer, tempDir, type RunResult, type ServerHandle } from '../e2e/harness.ts';
import { testWhen } from '../skip.ts';

const t = suite('ferry connect and batch: a server verified by a certificate authority');
const missing = () => (spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0 ? null : 'no openssl command');

const PASS = 'carol-password-1';
let dir = '';
let dataDir = '';
/** The client's FERRY_HOME: its known_hosts is this test's own. */
let home = '';
let server: ServerHandle | null = null;
let port = 0;

interface Leaf {
  fullchain: string;
  key: string;
  fingerprint: string;
}

const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

/** A leaf certificate from the test CA, with a key of its own, for the names in `san`; leaf + CA in one file. */
function issue(name: string, san: string): Leaf {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  writeFileSync(join(dir, `${name}.cnf`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.cnf`);
  const leaf = readFileSync(join(dir, `${name}.pem`), 'utf8');
  writeFileSync(join(dir, `${name}.fullchain.pem`), leaf + readFileSync(join(dir, 'ca.pem'), 'utf8'));
  const raw = new X509Certificate(leaf).raw;
  return { fullchain: join(dir, `${name}.fullchain.pem`), key: join(dir, `${name}.key`), fingerprint: `SHA256:${createHash('sha256').update(raw).digest('base64').replace(/=+$/, '')}` };
}

/** (Re)starts the server on the same port (known_hosts is by host:port) with `leaf`, or the self-signed default. */
async function serve(leaf: Leaf | null): Promise<ServerHandle> {
  await server?.stop();
  server = await startServer({ dataDir, home, ...(port ? { port } : {}), args: leaf ? ['--cert', leaf.fullchain, '--key', leaf.key] : [] });
  port = server.port;
  return server;
}

function env(extra: Record<string, string> = {}, ferryHome = home): NodeJS.ProcessEnv {
  const e = childEnv(ferryHome, { FERRY_PASSWORD: PASS, ...extra });
  if (!('FERRY_CA' in extra)) delete e.FERRY_CA;
  return e;
}

/** `ferry connect 127.0.0.1:PORT --user carol ...args`, LIST on stdin, not a terminal. */
const connect = (args: string[], extra: Record<string, string> = {}): Promise<RunResult> =>
  runFerry(['connect', `127.0.0.1:${port}`, '--user', 'carol', ...args], { input: 'LIST\n', env: env(extra), timeoutMs: 30_000 });

/** A child's output and the server's, for a failed assertion. */
const why = (r: RunResult) => `${r.stdout}${r.stderr}\n--- server:\n${server?.output() ?? ''}`;
const knownHosts = (ferryHome = home) => (existsSync(join(ferryHome, 'known_hosts')) ? readFileSync(join(ferryHome, 'known_hosts'), 'utf8') : '');
const re = (text: string) => new RegExp(text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
const DATE = '\\d{4}-\\d\\d-\\d\\d';

let first: Leaf;
let renewed: Leaf;
let otherName: Leaf;
let caFile = '';

t.before(() => {
  if (missing() !== null) return;
  dir = tempDir('ferry-ca-trust-');
  dataDir = join(dir, 'data');
  home = join(dir, 'client-home');
  mkdirSync(home);
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Ferry Test CA');
  caFile = join(dir, 'ca.pem');
  first = issue('first', 'DNS:localhost,IP:127.0.0.1');
  renewed = issue('renewed', 'DNS:localhost,IP:127.0.0.1');
  otherName = issue('other', 'DNS:other.test');
});

t.after(async () => {
  await server?.stop();
  server = null;
  if (dir) cleanup(dir);
});

testWhen(t, missing, 'an unknown server is refused without --ca (its CA is not a built-in one), and with a wrong pin', async () => {
  await serve(first);
  const unknown = await connect(['--signup']);
  assert.is(unknown.code, 1, why(unknown));
  assert.match(unknown.stderr, re(`Unknown server 127.0.0.1:${port} with fingerprint ${first.fingerprint}`));
  const wrongPin = await connect(['--signup', '--ca', caFile, '--fingerprint', renewed.fingerprint]);
  assert.is(wrongPin.code, 1, why(wrongPin));
  assert.match(wrongPin.stderr, re(`has fingerprint ${first.fingerprint}, not the pinned ${renewed.fingerprint}: refusing`));
  assert.is(knownHosts(), '', 'nothing remembered');
  assert.not.match(server?.output() ?? '', /Handshake done|Authentication|Signed up/, 'nothing was sent');
});

testWhen(t, missing, 'with --ca and no fingerprint: verified by the CA for 127.0.0.1, remembered with the ca marker', async () => {
  const r = await connect(['--signup', '--ca', caFile]);
  assert.is(r.code, 0, why(r));
  assert.match(r.stdout, new RegExp(`^Certificate verified by Ferry Test CA for 127\\.0\\.0\\.1 \\(valid until ${DATE}\\); 127\\.0\\.0\\.1:${port} remembered as `, 'm'));
  assert.match(r.stdout, re(`Connection successful (TLS, fingerprint ${first.fingerprint}, verified by Ferry Test CA for 127.0.0.1)`));
  assert.match(r.stdout, /Total directory size/);
  assert.is(knownHosts(), `127.0.0.1:${port} ${first.fingerprint} ca\n`);
  // Known now: no notice; FERRY_CA does what --ca does.
  const again = await connect([], { FERRY_CA: caFile });
  assert.is(again.code, 0, why(again));
  assert.not.match(again.stdout, /Certificate verified by|renewed/);
  assert.match(again.stdout, re(`verified by Ferry Test CA for 127.0.0.1)`));
});

testWhen(t, missing, 'a missing or unusable --ca or FERRY_CA file: one error line, exit 1', async () => {
  const nope = await connect(['--ca', join(dir, 'nope.pem')]);
  assert.is(nope.code, 1);
  assert.is(nope.stderr, `ferry: Cannot read --ca '${join(dir, 'nope.pem')}': no such file\n`);
  assert.is(nope.stdout, '', 'nothing else happened');
  const key = await connect([], { FERRY_CA: first.key });
  assert.is(key.code, 1);
  assert.is(key.stderr, `ferry: Cannot use FERRY_CA '${first.key}': it holds no PEM certificate\n`);
});

testWhen(t, missing, 'ferry batch with ca: and no fingerprint: probed, verified, transferred; without ca: the manifest problem says why', async () => {
  const work = join(dir, 'batch');
  mkdirSync(join(work, 'certs'), { recursive: true });
  writeFileSync(join(work, 'certs', 'ca.pem'), readFileSync(caFile));
  writeFileSync(join(work, 'a.txt'), 'verified by a CA');
  const manifest = (extra: string) => `server: 127.0.0.1:${port}\n${extra}user: carol\npassword: \${FERRY_PASSWORD}\nops:\n  - put: ./a.txt\n    to: from-batch/\n`;
  writeFileSync(join(work, 'with-ca.yaml'), manifest('ca: certs/ca.pem\n'));
  writeFileSync(join(work, 'no-ca.yaml'), manifest(''));
  const batchHome = join(dir, 'batch-home');
  const run = (file: string, extra: Record<string, string> = {}, ferryHome = batchHome) => runFerry(['batch', file], { env: env(extra, ferryHome), cwd: work, timeoutMs: 40_000 });

  const refused = await run('no-ca.yaml');
  assert.is(refused.code, 2, why(refused));
  assert.match(refused.stderr, new RegExp(`^no-ca\\.yaml:1:9: fingerprint: is required: 127\\.0\\.0\\.1:${port} is not in .*, and no certificate authority verifies its certificate: .*SELF_SIGNED_CERT_IN_CHAIN.*or give the server a certificate from a CA`, 'm'));
  assert.is(knownHosts(batchHome), '');

  const r = await run('with-ca.yaml');
  assert.is(r.code, 0, why(r));
  assert.match(r.stderr, new RegExp(`^Certificate verified by Ferry Test CA for 127\\.0\\.0\\.1 \\(valid until ${DATE}\\)`, 'm'));
  assert.is(readFileSync(join(dataDir, 'homes', 'carol', 'from-batch', 'a.txt'), 'utf8'), 'verified by a CA');
  assert.is(knownHosts(batchHome), `127.0.0.1:${port} ${first.fingerprint} ca\n`);

  // FERRY_CA in place of ca:, for a client that has never seen the server.
  const envHome = join(dir, 'batch-env-home');
  const viaEnv = await run('no-ca.yaml', { FERRY_CA: caFile }, envHome);
  assert.is(viaEnv.code, 0, why(viaEnv));
  assert.is(knownHosts(envHome), `127.0.0.1:${port} ${first.fingerprint} ca\n`);
});

testWhen(t, missing, 'a renewed certificate (new key, same CA) is accepted with one notice line and remembered', async () => {
  await serve(renewed);
  const r = await connect(['--ca', caFile]);
  assert.is(r.code, 0, why(r));
  assert.match(r.stdout, new RegExp(`^Server 127\\.0\\.0\\.1:${port} renewed its certificate \\(issued by Ferry Test CA, valid until ${DATE}\\): new fingerprint ${re(renewed.fingerprint).source}$`, 'm'));
  assert.match(r.stdout, re(`fingerprint ${renewed.fingerprint}, verified by Ferry Test CA`));
  assert.is(knownHosts(), `127.0.0.1:${port} ${renewed.fingerprint} ca\n`);
});

testWhen(t, missing, 'a certificate of the same CA for another name only is refused: the host name does not match', async () => {
  await serve(otherName);
  const r = await connect(['--ca', caFile]);
  assert.is(r.code, 1, why(r));
  assert.match(r.stderr, re(`WARNING: 127.0.0.1:${port} WAS VERIFIED BY A CERTIFICATE AUTHORITY BEFORE, AND NOW IS NOT.`));
  assert.match(r.stderr, /Reason: .*127\.0\.0\.1 is not in the cert's list/);
  assert.match(r.stderr, re(`pass --fingerprint ${otherName.fingerprint}`));
  assert.is(knownHosts(), `127.0.0.1:${port} ${renewed.fingerprint} ca\n`, 'unchanged');
});

testWhen(t, missing, 'the self-signed default after a CA certificate is refused loudly; nothing is sent', async () => {
  const s = await serve(null);
  const r = await connect(['--ca', caFile]);
  assert.is(r.code, 1, why(r));
  assert.match(r.stderr, re(`WARNING: 127.0.0.1:${port} WAS VERIFIED BY A CERTIFICATE AUTHORITY BEFORE, AND NOW IS NOT.`));
  assert.match(r.stderr, /Reason: +the certificate is self-signed \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);
  assert.match(r.stderr, re(`Remembered: ${renewed.fingerprint} (verified by a certificate authority)`));
  assert.match(r.stderr, re(`Presented:  ${s.fingerprint} (issued by ferry`));
  assert.not.match(r.stdout, /Connection successful/);
  assert.not.match(s.output(), /Authentication/, 'nothing was sent');
  assert.is(knownHosts(), `127.0.0.1:${port} ${renewed.fingerprint} ca\n`, 'unchanged');
});

t.run();
