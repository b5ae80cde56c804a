import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

const _PEM_CERTS = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----/g;

/**
 * The certificates of a PEM bundle (a private CA's `ca.pem`, or a system's `ca-certificates.crt`), each checked to
 * be a readable X.509 certificate; text between them is ignored. Throws a TypeError when there is none, or when
 * one cannot be read.
 *
 * @example
 * ```ts
 * tls.connect({ host, port, ca: caCertificates(await readFile('ca.pem', 'utf8')) });
 * ```
 */
export function caCertificates(pem: string): string[] {
  const blocks = pem.match(_PEM_CERTS) ?? [];
  if (blocks.length === 0) throw new TypeError('it holds no PEM certificate');
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new TypeError(`its certificate ${i + 1} of ${blocks.length} cannot be read (${(err as Error).message})`);
    }
  });
  return blocks;
}

/** A CA file that cannot be used: `reason` says why, without the file's name (`no such file`). */
export class CaFileError extends Error {
  override name = 'CaFileError';
  constructor(
    message: string,
    readonly file: string,
    readonly reason: string,
    /** True when the file could not be read at all; false when it was read but holds no usable certificate. */
    readonly unreadable: boolean,
  ) {
    super(message);
  }
}

/**
 * Reads a file of CA certificates (PEM) that a client trusts instead of the built-in roots: `--ca FILE`, `ca:` in
 * a batch manifest, `FERRY_CA`. `what` names where the path came from. Throws a CaFileError of one line, such as
 * `Cannot read --ca 'ca.pem': no such file` or `Cannot use --ca 'key.pem': it holds no PEM certificate`.
 *
 * @example
 * ```ts
 * const ca = readCaFile(process.env.FERRY_CA, 'FERRY_CA'); // ['-----BEGIN CERTIFICATE-----...']
 * ```
 */
export function readCaFile(file: string, what: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new CaFileError(`Cannot read ${what} '${file}': ${why}`, file, why, true);
  }
  try {
    return caCertificates(text);
  } catch (err) {
    const why = (err as Error).message;
    throw new CaFileError(`Cannot use ${what} '${file}': ${why}`, file, why, false);
  }
}
