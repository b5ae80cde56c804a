import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, unlink, writeFile, readdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fingerprintFromHex, fingerprintOf, fingerprintToHex, loadOrCreateIdentity, parseFingerprint } from '../../src/tls/mod.ts';

const isPosix = process.platform !== 'win32';
const FP = /^SHA256:[A-Za-z0-9+/]{43}$/;

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ferry-tls-'));
}

// ---------------------------------------------------------------------------------------------------------
const identity = suite('loadOrCreateIdentity');

identity('first call creates key.pem (0600) and cert.pem; second call loads the same identity', async () => {
  const dir = await tempDir();
  try {
    const tlsDir = join(dir, 'tls');
    const first = await loadOrCreateIdentity(tlsDir);
    assert.is(first.created, true);
    assert.match(first.fingerprint, FP);
    assert.match(first.key, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(first.cert, /^-----BEGIN CERTIFICATE-----\n/);
    assert.is(await readFile(join(tlsDir, 'key.pem'), 'utf8'), first.key);
    assert.is(await readFile(join(tlsDir, 'cert.pem'), 'utf8'), first.cert);
    assert.equal((await readdir(tlsDir)).sort(), ['cert.pem', 'key.pem'], 'no temporary files left');
    if (isPosix) {
      assert.is((await stat(join(tlsDir, 'key.pem'))).mode & 0o777, 0o600);
      assert.is((await stat(tlsDir)).mode & 0o777, 0o700);
    }
    const second = await loadOrCreateIdentity(tlsDir);
    assert.equal(second, { ...first, created: false });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

identity('the certificate is self-signed ECDSA P-256 for ten years, CA false, serverAuth, with the common name', async () => {
  const dir = await tempDir();
  try {
    const id = await loadOrCreateIdentity(dir, { commonName: 'files.example.org' });
    const cert = new X509Certificate(id.cert);
    assert.is(cert.subject, 'CN=files.example.org');
    assert.is(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey), 'self-signed');
    assert.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(id.key)));
    assert.is(cert.publicKey.asymmetricKeyType, 'ec');
    assert.is(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.is(cert.ca, false);
    assert.equal(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    const years = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / (365.25 * 24 * 3600e3);
    assert.ok(Math.abs(years - 10) < 0.01, `validity ${years} years`);
    assert.ok(Date.parse(cert.validFrom) <= Date.now());
    assert.is(cert.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:files.example.org');
    assert.is(fingerprintOf(cert.raw), id.fingerprint);
    assert.is(fingerprintFromHex(cert.fingerprint256), id.fingerprint);
    const other = await loadOrCreateIdentity(join(dir, 'b'));
    assert.is(new X509Certificate(other.cert).subject, 'CN=ferry');
    assert.is.not(other.fingerprint, id.fingerprint);
    assert.is.not(new X509Certificate(other.cert).serialNumber, cert.serialNumber);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

identity('a half-missing pair is an error, and nothing is overwritten', async () => {
  const dir = await tempDir();
  try {
    const id = await loadOrCreateIdentity(dir);
    await unlink(join(dir, 'cert.pem'));
    try {
      await loadOrCreateIdentity(dir);
      assert.unreachable('loaded a lone key');
    } catch (err) {
      assert.match((err as Error).message, /key\.pem exists but cert\.pem is missing/);
    }
    assert.is(await readFile(join(dir, 'key.pem'), 'utf8'), id.key);

    const dir2 = join(dir, 'only-cert');
    const id2 = await loadOrCreateIdentity(dir2);
    await unlink(join(dir2, 'key.pem'));
    try {
      await loadOrCreateIdentity(dir2);
      assert.unreachable('loaded a lone certificate');
    } catch (err) {
      assert.match((err as Error).message, /cert\.pem exists but key\.pem is missing/);
    }
    assert.is(await readFile(join(dir2, 'cert.pem'), 'utf8'), id2.cert);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

identity('a key that does not belong to the certificate is an error', async () => {
  const dir = await tempDir();
  try {
    await loadOrCreateIdentity(join(dir, 'a'));
    const b = await loadOrCreateIdentity(join(dir, 'b'));
    await writeFile(join(dir, 'a', 'key.pem'), b.key);
    try {
      await loadOrCreateIdentity(join(dir, 'a'));
      assert.unreachable('loaded a mismatched pair');
    } catch (err) {
      assert.match((err as Error).message, /does not belong to the certificate/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

identity('concurrent first starts end with one identity', async () => {
  const dir = await tempDir();
  try {
    const ids = await Promise.all([loadOrCreateIdentity(dir), loadOrCreateIdentity(dir), loadOrCreateIdentity(dir)]);
    assert.is(new Set(ids.map((i) => i.fingerprint)).size, 1);
    assert.is(ids.filter((i) => i.created).length, 1);
    assert.is(fingerprintOf(await readFile(join(dir, 'cert.pem'), 'utf8')), ids[0]!.fingerprint);
    assert.equal((await readdir(dir)).sort(), ['cert.pem', 'key.pem']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

identity.run();

// ---------------------------------------------------------------------------------------------------------
const handshake = suite('the identity in a real TLS 1.3 handshake');

handshake('a node:tls server with the identity presents the fingerprint the identity reports', async () => {
  const dir = await tempDir();
  const id = await loadOrCreateIdentity(dir);
  const server = tls.createServer({ key: id.key, cert: id.cert, minVersion: 'TLSv1.3' }, (socket) => {
    socket.end('hello');
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address() as AddressInfo;
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', resolve);
        socket.once('error', reject);
      });
      assert.is(socket.getProtocol(), 'TLSv1.3');
      const peer = socket.getPeerCertificate();
      assert.is(fingerprintFromHex(peer.fingerprint256), id.fingerprint);
      assert.is(fingerprintOf(peer.raw), id.fingerprint);
      let text = '';
      socket.setEncoding('utf8');
      for await (const chunk of socket) text += chunk as string;
      assert.is(text, 'hello');
    } finally {
      socket.destroy();
    }
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  }
});

handshake.run();

// ---------------------------------------------------------------------------------------------------------
const fp = suite('fingerprints');

fp('fingerprintOf takes PEM or DER and gives SHA256:<base64 without padding>', async () => {
  const dir = await tempDir();
  try {
    const id = await loadOrCreateIdentity(dir);
    const cert = new X509Certificate(id.cert);
    const expected = 'SHA256:' + Buffer.from(cert.fingerprint256.replace(/:/g, ''), 'hex').toString('base64').replace(/=+$/, '');
    assert.is(id.fingerprint, expected);
    assert.is(fingerprintOf(cert.raw), expected);
    assert.is(fingerprintOf(id.cert), expected);
    assert.is(fingerprintOf(Buffer.from(id.cert)), expected);
    assert.is(fingerprintOf(`some text before\r\n${id.cert.replace(/\n/g, '\r\n')}`), expected);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

fp('fingerprintFromHex and parseFingerprint', () => {
  const hex = Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, '0').toUpperCase()).join(':');
  const canonical = 'SHA256:' + Buffer.from(hex.replace(/:/g, ''), 'hex').toString('base64').replace(/=+$/, '');
  assert.is(fingerprintFromHex(hex), canonical);
  assert.is(fingerprintToHex(canonical), hex, 'back to the hex a browser shows');
  assert.throws(() => fingerprintToHex('SHA256:short'), /expected SHA256/);
  assert.is(fingerprintFromHex(hex.toLowerCase().replace(/:/g, '')), canonical);
  assert.throws(() => fingerprintFromHex('AB:CD'), /32 hex bytes/);
  assert.is(parseFingerprint(canonical), canonical);
  assert.is(parseFingerprint(`${canonical}=`), canonical);
  assert.is(parseFingerprint(` sha256:${canonical.slice(7)} `), canonical);
  assert.is(parseFingerprint(hex), canonical);
  assert.throws(() => parseFingerprint('SHA256:short'), /Cannot read fingerprint/);
  assert.throws(() => fingerprintOf('no certificate here'), /no PEM CERTIFICATE/);
});

fp.run();
