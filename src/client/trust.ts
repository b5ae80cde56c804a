import { formatAddress } from '../core/address.ts';
import type { KnownHosts } from './known-hosts.ts';

/** A server being connected to, as the user is asked about it. */
export interface HostCheck {
  host: string;
  port: number;
  fingerprint: string;
  /** The fingerprint remembered for this host, if any (it differs from `fingerprint` when called). */
  known: string | null;
}

export interface TrustOptions {
  /** Pin: the server's certificate must have this fingerprint (`SHA256:...`). */
  fingerprint?: string;
  /** Asked about a server that is not known yet; true trusts it (and it is remembered). */
  confirmHost?: (check: HostCheck) => Promise<boolean>;
}

/**
 * Decides whether to trust the server's certificate fingerprint, the way ssh decides about host keys (trust on
 * first use): a pinned fingerprint must match (and is remembered); a remembered one must match, or the connection
 * is refused loudly; an unknown server is trusted only if the user says so (`confirmHost`), and then remembered.
 * Resolves how it was trusted ('asked': the user took time to answer, so the caller connects afresh); throws an
 * Error saying why not.
 */
export async function checkIdentity(
  host: string,
  port: number,
  fingerprint: string,
  options: TrustOptions,
  knownHosts: KnownHosts | null,
): Promise<'pinned' | 'known' | 'asked'> {
  const where = formatAddress(host, port);
  if (options.fingerprint) {
    if (options.fingerprint !== fingerprint) {
      throw new Error(`Server ${where} has fingerprint ${fingerprint}, not the pinned ${options.fingerprint}: refusing to connect`);
    }
    await knownHosts?.remember(host, port, fingerprint);
    return 'pinned';
  }
  const known = (await knownHosts?.lookup(host, port)) ?? null;
  if (known === fingerprint) return 'known';
  if (known) {
    throw new Error(
      [
        `WARNING: THE FINGERPRINT OF ${where} HAS CHANGED.`,
        `Remembered: ${known}`,
        `Presented:  ${fingerprint}`,
        `Someone may be intercepting the connection, or the server's identity was replaced.`,
        `Refusing to connect. If the change is expected, pass --fingerprint ${fingerprint}`,
      ].join('\n'),
    );
  }
  const check = { host, port, fingerprint, known };
  if (!options.confirmHost) {
    throw new Error(`Unknown server ${where} with fingerprint ${fingerprint}; verify it with the server's operator, then pass --fingerprint ${fingerprint}`);
  }
  if (!(await options.confirmHost(check))) throw new Error(`Server ${where} not trusted; nothing was sent`);
  await knownHosts?.remember(host, port, fingerprint);
  return 'asked';
}
