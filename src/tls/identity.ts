import { Buffer } from 'node:buffer';
import { createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import process from 'node:process';
import { placeNoReplaceSync } from '../fs/place.ts';
import { certificateDer, fingerprintOf, type Fingerprint } from './fingerprint.ts';

// The fingerprint helpers are part of this module's surface too (clients import them from here); they
// live in fingerprint.ts, which loads nothing heavy.
export { certificateDer, fingerprintFromHex, fingerprintOf, isFingerprint, parseFingerprint, type Fingerprint } from './fingerprint.ts';

/** The server's TLS identity: PEM key and certificate, and the certificate's fingerprint. */
export interface TlsIdentity {
  /** PKCS#8 PEM private key. */
  key: string;
  /** PEM X.509 certificate. */
  cert: string;
  /** `SHA256:...` of the certificate, what clients pin. */
  fingerprint: Fingerprint;
  /** True when this call generated the pair, false when it loaded an existing one. */
  created: boolean;
}

export interface IdentityOptions {
  /** Subject common name of a new certificate (default 'ferry'); also added as a DNS or IP name. */
  commonName?: string;
}

/** File names of the pair inside the identity directory. */
export const KEY_FILE = 'key.pem';
export const CERT_FILE = 'cert.pem';
const VALIDITY_YEARS = 10;

/**
 * Loads the TLS identity kept in `dir` (`key.pem`, mode 0600, and `cert.pem`), or makes one on first use:
 * an ECDSA P-256 key and a self-signed certificate valid for ten years (CA false, digitalSignature,
 * serverAuth; names localhost, 127.0.0.1, ::1 and the common name). A new pair is written atomically
 * and an existing file is never replaced; if only one of the two files exists, it throws rather than
 * guess, since replacing the pair changes the fingerprint every client has pinned.
 *
 * @example
 * ```ts
 * const id = await loadOrCreateIdentity('./ferry-data/tls');
 * if (id.created) console.log(`New TLS identity, fingerprint ${id.fingerprint}`);
 * tls.createServer({ key: id.key, cert: id.cert, minVersion: 'TLSv1.3' });
 * ```
 */
export async function loadOrCreateIdentity(dir: string, opts: IdentityOptions = {}): Promise<TlsIdentity> {
  const existing = await _load(dir);
  if (existing) return existing;
  const fresh = await _generate(opts.commonName ?? 'ferry');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keyTemp = await _writeTemp(join(dir, KEY_FILE), fresh.key, 0o600);
  let certTemp: string | undefined;
  try {
    certTemp = await _writeTemp(join(dir, CERT_FILE), fresh.cert, 0o644);
    // The key goes first: whoever publishes it owns the identity, and a crash between the two leaves a
    // lone key.pem, which the next start reports instead of silently making a new identity.
    placeNoReplaceSync(keyTemp, join(dir, KEY_FILE));
    placeNoReplaceSync(certTemp, join(dir, CERT_FILE));
  } catch (err) {
    if (_code(err) !== 'EEXIST') throw err;
    // Another process made the identity at the same moment: use theirs.
    for (let tries = 0; tries < 20; tries++) {
      const theirs = await _load(dir).catch((e: unknown) => (tries < 19 ? null : Promise.reject(e)));
      if (theirs) return theirs;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw err;
  } finally {
    await unlink(keyTemp).catch(() => {});
    if (certTemp) await unlink(certTemp).catch(() => {});
  }
  return { ...fresh, created: true };
}

/**
 * A new identity (key and self-signed certificate, as `loadOrCreateIdentity` makes one), not written anywhere:
 * for a caller that keeps it elsewhere (a shared database).
 */
export async function generateIdentity(opts: IdentityOptions = {}): Promise<Omit<TlsIdentity, 'created'>> {
  return _generate(opts.commonName ?? 'ferry');
}

/**
 * Checks that `key` and `cert` are a PEM pair (the key belongs to the certificate) and returns the identity;
 * throws an Error that starts with `where` otherwise.
 */
export function identityOf(key: string, cert: string, where: string): Omit<TlsIdentity, 'created'> {
  return _check(key, cert, where, KEY_FILE, CERT_FILE);
}

/**
 * The identity in a certificate file (PEM: the certificate, then any chain) and its key file, as given to
 * `ferry serve --cert --key`: checked to be a pair; the fingerprint is the first (leaf) certificate's. Throws an
 * Error with one line naming the file and the problem.
 */
export async function loadCertificateFiles(certFile: string, keyFile: string): Promise<TlsIdentity> {
  const read = async (file: string, flag: string) => {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      throw new Error(`Cannot read ${flag} '${file}': ${_code(err) === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  };
  const [cert, key] = await Promise.all([read(certFile, '--cert'), read(keyFile, '--key')]);
  return { ..._check(key, cert, `Cannot use --cert '${certFile}' with --key '${keyFile}'`, '--key', '--cert'), created: false };
}

/** The identity in `dir`, null if neither file exists; throws if only one does or they do not match. */
async function _load(dir: string): Promise<TlsIdentity | null> {
  const [key, cert] = await Promise.all([_readIfExists(join(dir, KEY_FILE)), _readIfExists(join(dir, CERT_FILE))]);
  if (key === null && cert === null) return null;
  if (key === null || cert === null) {
    const [has, lacks] = key === null ? [CERT_FILE, KEY_FILE] : [KEY_FILE, CERT_FILE];
    throw new Error(
      `Cannot load the TLS identity in '${dir}': ${has} exists but ${lacks} is missing; ` +
        `restore ${lacks}, or remove ${has} to make a new identity (clients will see a new fingerprint)`,
    );
  }
  return { ..._check(key, cert, `Cannot load the TLS identity in '${dir}'`, KEY_FILE, CERT_FILE), created: false };
}

function _check(key: string, cert: string, where: string, keyName: string, certName: string): Omit<TlsIdentity, 'created'> {
  let der: Buffer;
  try {
    der = certificateDer(cert);
  } catch {
    throw new Error(`${where}: ${certName} holds no PEM certificate`);
  }
  let spki: Buffer;
  try {
    spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  } catch (err) {
    throw new Error(`${where}: ${keyName} is not a valid private key (${(err as Error).message})`);
  }
  // The certificate embeds its public key verbatim (SubjectPublicKeyInfo), so a matching pair contains it.
  if (!der.includes(spki)) {
    throw new Error(`${where}: ${keyName} does not belong to the certificate in ${certName}`);
  }
  return { key, cert, fingerprint: fingerprintOf(der) };
}

async function _generate(commonName: string): Promise<Omit<TlsIdentity, 'created'>> {
  const x509 = await _x509();
  const crypto: webcrypto.Crypto = webcrypto; // the same object as globalThis.crypto, on Node and Deno; `deno check` has no type for the global
  const alg = { name: 'ECDSA', namedCurve: 'P-256' };
  const keys = (await crypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const names: { type: 'dns' | 'ip'; value: string }[] = [
    { type: 'dns', value: 'localhost' },
    { type: 'ip', value: '127.0.0.1' },
    { type: 'ip', value: '::1' },
  ];
  if (isIP(commonName)) names.push({ type: 'ip', value: commonName });
  else if (/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(commonName)) names.push({ type: 'dns', value: commonName });
  const unique = names.filter((n, i) => names.findIndex((m) => m.type === n.type && m.value === n.value) === i);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01; // positive and of full length
  const notBefore = new Date(Date.now() - 60 * 60 * 1000); // an hour back, for clocks a little behind
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + VALIDITY_YEARS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString('hex'),
      name: [{ CN: [commonName] }],
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(unique, false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = _pem('PRIVATE KEY', pkcs8);
  const der = Buffer.from(cert.rawData);
  return { key, cert: _pem('CERTIFICATE', der), fingerprint: fingerprintOf(der) };
}

type _X509 = typeof import('@peculiar/x509');
let _x509Module: Promise<_X509> | undefined;

/** @peculiar/x509 costs a few hundred ms to load, and only a first start needs it: load it on demand. */
function _x509(): Promise<_X509> {
  _x509Module ??= (async () => {
    await import('reflect-metadata'); // must come before @peculiar/x509
    return await import('@peculiar/x509');
  })();
  return _x509Module;
}

function _pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

async function _readIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (_code(err) === 'ENOENT') return null;
    throw err;
  }
}

/** Writes `text` to a new temporary file next to `target`, flushed to disk, and returns its path. */
async function _writeTemp(target: string, text: string, mode: number): Promise<string> {
  const temp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(temp, 'wx', mode);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(temp).catch(() => {});
    throw err;
  }
  await fh.close();
  return temp;
}

function _code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}
