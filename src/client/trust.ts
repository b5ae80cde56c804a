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

/** What the certificate authorities the client trusts say about the server's certificate, for the host connected to. */
export interface CaVerdict {
  /** The chain leads to a trusted CA (the built-in roots, or `--ca`), and the certificate names the host (or IP). */
  valid: boolean;
  /** Why not, when not valid (one line). */
  reason: string | null;
  /** Who issued the certificate: the issuer's CN, else its O, as the server presented it (escaped). */
  issuer: string;
  /** When the certificate expires, `YYYY-MM-DD` (UTC); '' when it cannot be read. */
  validTo: string;
}

/** The server's certificate as presented on one connection. */
export interface PresentedIdentity {
  host: string;
  port: number;
  fingerprint: string;
  ca: CaVerdict;
}

/**
 * How the server came to be trusted: `pinned` (`--fingerprint`), `known` (known_hosts), `asked` (the user accepted
 * it; the caller connects afresh), `ca` (a server not known before, verified by a CA), `renewed` (a server verified
 * by a CA before presents a new certificate, verified again), `to-ca` (a server known by its fingerprint presents a
 * new certificate, verified by a CA).
 */
export type TrustStatus = 'pinned' | 'known' | 'asked' | 'ca' | 'renewed' | 'to-ca';

export interface Trust extends PresentedIdentity {
  status: TrustStatus;
  /** The fingerprint remembered before (`renewed`, `to-ca`), else null. */
  previous: string | null;
  /** The issuer when a CA verified the certificate for the host, else null. */
  verifiedBy: string | null;
}

/**
 * Decides whether to trust the server's certificate, the way ssh decides about host keys (trust on first use), and
 * by certificate authority when one vouches for it for this host (`server.ca.valid`):
 *
 * - a pinned fingerprint must match, CA or not (and is remembered, marked `ca` when a CA verified it);
 * - a server remembered as verified by a CA must be verified by a CA again, or the connection is refused loudly;
 *   with a new fingerprint it renewed its certificate, and the new one is remembered;
 * - a server remembered by its fingerprint alone must present it again (then it is marked `ca` if a CA verifies it
 *   now), or a new certificate that a CA verifies; anything else is refused loudly;
 * - an unknown server is trusted if a CA verifies it, else only if the user says so (`confirmHost`).
 *
 * Resolves how it was trusted; throws an Error saying why not.
 */
export async function checkIdentity(server: PresentedIdentity, options: TrustOptions, knownHosts: KnownHosts | null): Promise<Trust> {
  const { host, port, fingerprint, ca } = server;
  const where = formatAddress(host, port);
  const verifiedBy = ca.valid ? ca.issuer : null;
  const trust = (status: TrustStatus, previous: string | null = null): Trust => ({ ...server, status, previous, verifiedBy });
  if (options.fingerprint) {
    if (options.fingerprint !== fingerprint) {
      throw new Error(`Server ${where} has fingerprint ${fingerprint}, not the pinned ${options.fingerprint}: refusing to connect`);
    }
    await knownHosts?.remember(host, port, fingerprint, { ca: ca.valid });
    return trust('pinned');
  }
  const known = (await knownHosts?.lookup(host, port)) ?? null;
  if (known?.ca) {
    if (!ca.valid) {
      throw new Error(
        [
          `WARNING: ${where} WAS VERIFIED BY A CERTIFICATE AUTHORITY BEFORE, AND NOW IS NOT.`,
          `Reason:     ${ca.reason ?? 'not verified'}`,
          `Remembered: ${known.fingerprint} (verified by a certificate authority)`,
          `Presented:  ${fingerprint} (issued by ${ca.issuer}${ca.validTo ? `, valid until ${ca.validTo}` : ''})`,
          `Someone may be intercepting the connection, or the server's certificate was replaced by one no trusted authority vouches for.`,
          `Refusing to connect. Only if the change is expected (ask the server's operator), pass --fingerprint ${fingerprint}`,
        ].join('\n'),
      );
    }
    if (known.fingerprint === fingerprint) return trust('known');
    await knownHosts?.remember(host, port, fingerprint, { ca: true });
    return trust('renewed', known.fingerprint);
  }
  if (known) {
    if (known.fingerprint === fingerprint) {
      if (ca.valid) await knownHosts?.remember(host, port, fingerprint, { ca: true });
      return trust('known');
    }
    if (ca.valid) {
      await knownHosts?.remember(host, port, fingerprint, { ca: true });
      return trust('to-ca', known.fingerprint);
    }
    throw new Error(
      [
        `WARNING: THE FINGERPRINT OF ${where} HAS CHANGED.`,
        `Remembered: ${known.fingerprint}`,
        `Presented:  ${fingerprint}`,
        `Someone may be intercepting the connection, or the server's identity was replaced.`,
        `Refusing to connect. If the change is expected, pass --fingerprint ${fingerprint}`,
      ].join('\n'),
    );
  }
  if (ca.valid) {
    await knownHosts?.remember(host, port, fingerprint, { ca: true });
    return trust('ca');
  }
  const check = { host, port, fingerprint, known: null };
  if (!options.confirmHost) {
    throw new Error(`Unknown server ${where} with fingerprint ${fingerprint}; verify it with the server's operator, then pass --fingerprint ${fingerprint}`);
  }
  if (!(await options.confirmHost(check))) throw new Error(`Server ${where} not trusted; nothing was sent`);
  await knownHosts?.remember(host, port, fingerprint);
  return trust('asked');
}

/**
 * The line a client shows when trust came from a certificate authority in a way worth telling (a new server, a
 * renewal, a move to a CA's certificate); null otherwise.
 *
 * @example
 * ```ts
 * trustNotice(client.trust); // 'Server files.example.org:2121 renewed its certificate (issued by R11, valid until 2027-03-01): new fingerprint SHA256:...'
 * ```
 */
export function trustNotice(trust: Trust | null): string | null {
  if (!trust?.verifiedBy) return null;
  const where = formatAddress(trust.host, trust.port);
  const until = trust.ca.validTo ? `, valid until ${trust.ca.validTo}` : '';
  switch (trust.status) {
    case 'ca':
      return `Certificate verified by ${trust.verifiedBy} for ${trust.host}${until ? ` (${until.slice(2)})` : ''}; ${where} remembered as ${trust.fingerprint}`;
    case 'renewed':
      return `Server ${where} renewed its certificate (issued by ${trust.verifiedBy}${until}): new fingerprint ${trust.fingerprint}`;
    case 'to-ca':
      return `Server ${where} now has a certificate verified by ${trust.verifiedBy} for ${trust.host}${until} (it was known by fingerprint ${trust.previous}): new fingerprint ${trust.fingerprint}`;
    default:
      return null;
  }
}
