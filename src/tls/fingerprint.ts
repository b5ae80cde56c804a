import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';

/** A certificate fingerprint as ferry shows and stores it: `SHA256:` then unpadded base64, like ssh. */
export type Fingerprint = `SHA256:${string}`;

const _PEM_CERT = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/;
const _CANONICAL = /^SHA256:[A-Za-z0-9+/]{43}$/;

/**
 * The fingerprint of a certificate: SHA-256 over its DER bytes, as `SHA256:` + base64 without padding
 * (the format ssh uses for host keys). Takes DER bytes or PEM text (the first certificate in it).
 *
 * @example
 * ```ts
 * fingerprintOf(await readFile('cert.pem', 'utf8')); // 'SHA256:3q2+7w...'
 * ```
 */
export function fingerprintOf(certDerOrPem: Buffer | Uint8Array | string): Fingerprint {
  return _fromDigest(createHash('sha256').update(certificateDer(certDerOrPem)).digest());
}

/**
 * Converts Node's `getPeerCertificate().fingerprint256` (`AB:CD:...`, 32 hex bytes) into ferry's
 * `SHA256:...` form.
 *
 * @example
 * ```ts
 * fingerprintFromHex(socket.getPeerCertificate().fingerprint256) === expected;
 * ```
 */
export function fingerprintFromHex(hexColonString: string): Fingerprint {
  const hex = hexColonString.trim().replace(/:/g, '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new TypeError(`Cannot read fingerprint '${hexColonString}': expected 32 hex bytes such as AB:CD:...`);
  }
  return _fromDigest(Buffer.from(hex, 'hex'));
}

/**
 * The other way: ferry's `SHA256:...` as 32 hex bytes `AB:CD:...`, the form browsers show in their certificate viewer.
 *
 * @example
 * ```ts
 * fingerprintToHex(fingerprintFromHex('AB:CD:...')); // 'AB:CD:...'
 * ```
 */
export function fingerprintToHex(fingerprint: string): string {
  if (!_CANONICAL.test(fingerprint)) throw new TypeError(`Cannot read fingerprint '${fingerprint}': expected SHA256:<base64>`);
  return Buffer.from(fingerprint.slice(7), 'base64').toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

/**
 * Reads a fingerprint as a person may type it (for `--fingerprint` or a manifest): the `SHA256:` base64
 * form, with or without its `=` padding, or 32 hex bytes with or without colons. Returns the canonical
 * `SHA256:` form; throws a TypeError on anything else.
 *
 * @example
 * ```ts
 * parseFingerprint('AB:CD:...:EF'); // 'SHA256:q80...'
 * ```
 */
export function parseFingerprint(text: string): Fingerprint {
  const t = text.trim();
  const b64 = /^sha256:([A-Za-z0-9+/]{43})=?$/i.exec(t);
  if (b64) return `SHA256:${b64[1]}`;
  if (/^[0-9a-fA-F]{2}(:?[0-9a-fA-F]{2}){31}$/.test(t)) return fingerprintFromHex(t);
  throw new TypeError(`Cannot read fingerprint '${text}': expected SHA256:<base64> or 32 hex bytes`);
}

/** True for a fingerprint in the canonical `SHA256:` + 43 base64 characters form. */
export function isFingerprint(text: string): text is Fingerprint {
  return _CANONICAL.test(text);
}

/**
 * The DER bytes of a certificate given as DER or as PEM (text or bytes). Throws a TypeError when PEM
 * text holds no certificate.
 */
export function certificateDer(certDerOrPem: Buffer | Uint8Array | string): Buffer {
  // DER always starts with a SEQUENCE tag (0x30); anything else given as bytes is read as PEM text.
  if (typeof certDerOrPem !== 'string' && certDerOrPem[0] === 0x30) return Buffer.from(certDerOrPem);
  const pem = typeof certDerOrPem === 'string' ? certDerOrPem : Buffer.from(certDerOrPem).toString('latin1');
  const m = _PEM_CERT.exec(pem);
  if (!m?.[1]) throw new TypeError('Cannot read certificate: no PEM CERTIFICATE block found');
  return Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
}

function _fromDigest(digest: Buffer): Fingerprint {
  return `SHA256:${digest.toString('base64').replace(/=+$/, '')}`;
}
