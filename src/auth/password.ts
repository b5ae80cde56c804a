/**
 * Password hashing with scrypt. A hash is stored as one string:
 *
 *   scrypt$N$r$p$saltB64$hashB64      e.g. scrypt$32768$8$1$<16 bytes>$<32 bytes>
 *
 * The parameters travel with the hash, so a hash made with cheaper test parameters (FERRY_SCRYPT_N)
 * or older defaults still verifies after the defaults change.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { FerryError } from '../core/errors.ts';

/** Default cost: N = 2^15, r = 8, p = 1 (32 MiB of memory per hash). */
export const SCRYPT_DEFAULTS: Readonly<{ N: number; r: number; p: number; keylen: number; saltBytes: number }> = {
  N: 2 ** 15,
  r: 8,
  p: 1,
  keylen: 32,
  saltBytes: 16,
};

export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 1024;

// Bounds on parameters read back from a stored hash, so a tampered users file cannot make a check
// allocate gigabytes or run for minutes.
const _MAX_N = 2 ** 20;
const _MAX_R = 32;
const _MAX_P = 16;
const _MAX_MEMORY = 256 * 1024 * 1024;
const _MIN_KEYLEN = 16;
const _MAX_KEYLEN = 64;

interface _Params {
  N: number;
  r: number;
  p: number;
}

/**
 * Throws `FerryError('weak_password')` unless the password is 8 to 1024 characters long (counted in
 * Unicode code points).
 *
 * @example
 * validatePassword('correct horse'); // ok
 * validatePassword('short');         // throws weak_password
 */
export function validatePassword(password: string): void {
  if (typeof password !== 'string') throw new FerryError('weak_password', 'Password must be a string');
  const length = [...password].length;
  if (length < MIN_PASSWORD_LENGTH || length > MAX_PASSWORD_LENGTH) {
    throw new FerryError(
      'weak_password',
      `Password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long (got ${length})`,
    );
  }
}

/**
 * Hashes a password with scrypt and a fresh random 16-byte salt. Does not judge the password: call
 * `validatePassword` first. The cost N comes from `FERRY_SCRYPT_N` when set (tests use 1024), else 2^15.
 *
 * @example
 * const encoded = await hashPassword('correct horse'); // 'scrypt$32768$8$1$...$...'
 */
export async function hashPassword(password: string): Promise<string> {
  const params = _currentParams();
  const salt = randomBytes(SCRYPT_DEFAULTS.saltBytes);
  const hash = await _scrypt(password, salt, SCRYPT_DEFAULTS.keylen, params);
  return ['scrypt', params.N, params.r, params.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

/**
 * Checks a password against an encoded hash in constant time. Returns false (never throws) for a wrong
 * password and for an encoded string that is not a well-formed scrypt hash.
 *
 * @example
 * await verifyPassword('correct horse', encoded); // true
 * await verifyPassword('wrong', encoded);         // false
 */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  if (typeof password !== 'string') return false;
  const parsed = _parse(encoded);
  if (parsed === null) return false;
  let actual: Buffer;
  try {
    actual = await _scrypt(password, parsed.salt, parsed.hash.length, parsed);
  } catch {
    return false;
  }
  return timingSafeEqual(actual, parsed.hash);
}

/**
 * Does the work of one `verifyPassword` against a fixed dummy hash and returns false. Call it when the
 * user name is unknown, so that an unknown name takes as long to refuse as a wrong password.
 *
 * @example
 * const record = await users.get(name);
 * const ok = record ? await verifyPassword(password, record.hash) : await burnPasswordCheck(password);
 */
export async function burnPasswordCheck(password: string): Promise<false> {
  const { N, r, p } = _currentParams();
  const dummy = `scrypt$${N}$${r}$${p}$${_DUMMY_SALT}$${_DUMMY_HASH}`;
  await verifyPassword(typeof password === 'string' ? password : '', dummy);
  return false;
}

const _DUMMY_SALT = Buffer.alloc(SCRYPT_DEFAULTS.saltBytes, 0x5a).toString('base64');
const _DUMMY_HASH = Buffer.alloc(SCRYPT_DEFAULTS.keylen, 0).toString('base64');

function _currentParams(): _Params {
  const raw = process.env['FERRY_SCRYPT_N'];
  if (raw === undefined || raw === '') return { N: SCRYPT_DEFAULTS.N, r: SCRYPT_DEFAULTS.r, p: SCRYPT_DEFAULTS.p };
  const N = Number(raw);
  if (!_isPowerOfTwo(N) || N < 1024 || N > _MAX_N) {
    throw new Error(`Cannot use FERRY_SCRYPT_N='${raw}': it must be a power of two from 1024 to ${_MAX_N}`);
  }
  return { N, r: SCRYPT_DEFAULTS.r, p: SCRYPT_DEFAULTS.p };
}

function _parse(encoded: unknown): (_Params & { salt: Buffer; hash: Buffer }) | null {
  if (typeof encoded !== 'string' || encoded.length > 1024) return null;
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [, nText, rText, pText, saltText, hashText] = parts;
  const N = _parseInt(nText);
  const r = _parseInt(rText);
  const p = _parseInt(pText);
  if (N === null || r === null || p === null) return null;
  if (!_isPowerOfTwo(N) || N < 2 || N > _MAX_N || r > _MAX_R || p > _MAX_P) return null;
  if (128 * N * r > _MAX_MEMORY) return null;
  const salt = _parseBase64(saltText);
  const hash = _parseBase64(hashText);
  if (salt === null || hash === null || salt.length === 0) return null;
  if (hash.length < _MIN_KEYLEN || hash.length > _MAX_KEYLEN) return null;
  return { N, r, p, salt, hash };
}

function _parseInt(text: string | undefined): number | null {
  if (text === undefined || !/^[1-9][0-9]{0,9}$/.test(text)) return null;
  return Number(text);
}

function _parseBase64(text: string | undefined): Buffer | null {
  if (text === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  return Buffer.from(text, 'base64');
}

function _isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function _scrypt(password: string, salt: Buffer, keylen: number, { N, r, p }: _Params): Promise<Buffer> {
  // Node refuses when 128 * N * r exceeds maxmem (default 32 MiB, exactly the default cost): leave room.
  const options: ScryptOptions = { N, r, p, maxmem: 128 * N * r * p + 16 * 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, keylen, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}
