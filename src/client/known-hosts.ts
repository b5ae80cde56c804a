import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import process from 'node:process';
import { writeFileAtomic } from '../fs/atomic.ts';

/**
 * The folder that holds the client's own files (known_hosts): `$FERRY_HOME` if set, else
 * `$XDG_CONFIG_HOME/ferry`, else `%APPDATA%\ferry` on Windows, else `~/.config/ferry`.
 *
 * @example
 * ```ts
 * ferryHome(); // '/home/ann/.config/ferry'
 * ```
 */
export function ferryHome(): string {
  const env = process.env;
  if (env['FERRY_HOME']) return env['FERRY_HOME'];
  // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
  const xdg = env['XDG_CONFIG_HOME'];
  if (xdg && isAbsolute(xdg)) return join(xdg, 'ferry');
  if (process.platform === 'win32') return join(env['APPDATA'] || join(homedir(), 'AppData', 'Roaming'), 'ferry');
  return join(homedir(), '.config', 'ferry');
}

/**
 * The `host:port` key a server is remembered under: host names in lower case, IPv6 addresses in their
 * shortest form and in brackets (`[::1]:2121`).
 *
 * @example
 * ```ts
 * hostKey('Files.Example.org', 2121); // 'files.example.org:2121'
 * hostKey('0:0:0:0:0:0:0:1', 2121);   // '[::1]:2121'
 * ```
 */
export function hostKey(host: string, port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`Invalid port ${port}: expected 1 to 65535`);
  let h = host.trim();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h === '' || /[\s#\[\]/\\@?]/.test(h) || h.split(':').length === 2) throw new TypeError(`Invalid host '${host}'`);
  if (h.includes(':')) {
    // An IPv6 address: let the URL parser put it in canonical form (and reject what is not one).
    let canonical: string;
    try {
      canonical = new URL(`http://[${h}]/`).hostname;
    } catch {
      throw new TypeError(`Invalid host '${host}': not an IPv6 address`);
    }
    return `${canonical}:${port}`;
  }
  return `${h.toLowerCase()}:${port}`;
}

const _FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;
const _KEY = /^(\[[0-9A-Fa-f:.]+\]|[^\s#\[\]:]+):(\d{1,5})$/;

/** What is remembered about a server: its certificate's fingerprint, and whether a CA vouched for it (`ca`). */
export interface KnownHost {
  fingerprint: string;
  /** The certificate was verified by a certificate authority for this host: the next one must be too. */
  ca: boolean;
}

/** The word after the fingerprint on the line of a server verified by a certificate authority. */
const _CA_MARK = 'ca';

/** One line of the file: the key, fingerprint and CA mark when it is a host line, null for anything else. */
function _parseLine(line: string): ({ key: string } & KnownHost) | null {
  const t = line.trim();
  if (t === '' || t.startsWith('#')) return null;
  const [key, fingerprint, mark, ...rest] = t.split(/\s+/);
  if (!key || !fingerprint || rest.length > 0 || !_FINGERPRINT.test(fingerprint)) return null;
  if (mark !== undefined && mark !== _CA_MARK) return null;
  const m = _KEY.exec(key);
  if (!m?.[1] || !m[2]) return null;
  try {
    return { key: hostKey(m[1], Number(m[2])), fingerprint, ca: mark === _CA_MARK };
  } catch {
    return null;
  }
}

/**
 * The servers this client has trusted, by certificate fingerprint, as ssh keeps host keys: a text file
 * with one `host:port SHA256:...` line per server, and ` ca` after the fingerprint when a certificate
 * authority verified the certificate for that host (`host:port SHA256:... ca`). Blank lines, `#` comments
 * and lines it cannot read are kept as they are and otherwise ignored. Every change rewrites the file atomically (a temporary
 * file, then a rename), in a folder of mode 0700, as a file of mode 0600.
 *
 * @example
 * ```ts
 * const known = new KnownHosts();
 * const seen = await known.lookup('files.example.org', 2121); // { fingerprint: 'SHA256:...', ca: false } or null
 * if (seen === null) await known.remember('files.example.org', 2121, fingerprint);
 * else if (seen.fingerprint !== fingerprint) throw new Error('The server identity changed');
 * ```
 */
export class KnownHosts {
  readonly file: string;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(file: string = join(ferryHome(), 'known_hosts')) {
    this.file = file;
  }

  /** What is remembered for `host:port` (the fingerprint, and whether a CA verified it), or null. */
  async lookup(host: string, port: number): Promise<KnownHost | null> {
    const key = hostKey(host, port);
    await this.#tail.catch(() => {});
    for (const line of await this.#lines()) {
      const entry = _parseLine(line);
      if (entry?.key === key) return { fingerprint: entry.fingerprint, ca: entry.ca };
    }
    return null;
  }

  /**
   * Remembers `fingerprint` (`SHA256:...`) for `host:port`, replacing what was remembered for it; `ca: true` marks
   * it as verified by a certificate authority.
   */
  async remember(host: string, port: number, fingerprint: string, options: { ca?: boolean } = {}): Promise<void> {
    const key = hostKey(host, port);
    if (!_FINGERPRINT.test(fingerprint)) throw new TypeError(`Invalid fingerprint '${fingerprint}': expected SHA256:<base64>`);
    await this.#update((lines) => {
      const entry = options.ca === true ? `${key} ${fingerprint} ${_CA_MARK}` : `${key} ${fingerprint}`;
      let placed = false;
      const out: string[] = [];
      for (const line of lines) {
        if (_parseLine(line)?.key !== key) out.push(line);
        else if (!placed) {
          out.push(entry);
          placed = true;
        }
      }
      if (!placed) out.push(entry);
      return out;
    });
  }

  /** Forgets `host:port`; resolves true if it was remembered. */
  async forget(host: string, port: number): Promise<boolean> {
    const key = hostKey(host, port);
    let removed = false;
    await this.#update((lines) => {
      const out = lines.filter((line) => _parseLine(line)?.key !== key);
      removed = out.length !== lines.length;
      return removed ? out : null;
    });
    return removed;
  }

  async #lines(): Promise<string[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const lines = text.split(/\r?\n/);
    if (lines.at(-1) === '') lines.pop();
    return lines;
  }

  /** Runs read-change-write steps one at a time; `change` returns null to leave the file as it is. */
  #update(change: (lines: string[]) => string[] | null): Promise<void> {
    const run = this.#tail.then(async () => {
      const next = change(await this.#lines());
      if (next) await this.#write(next);
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  async #write(lines: string[]): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file, lines.map((l) => `${l}\n`).join(''));
  }

}
