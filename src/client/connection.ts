import net from 'node:net';
import tls from 'node:tls';
import { DEFAULT_PORT, formatAddress } from '../core/address.ts';
import { FerryError } from '../core/errors.ts';
import { escapeText } from '../core/text.ts';
import { fingerprintFromHex } from '../tls/fingerprint.ts';
import { FerryClient } from './client.ts';
import type { ClientEncodings } from '../plugin/types.ts';
import { KnownHosts } from './known-hosts.ts';
import { checkIdentity, type CaVerdict, type PresentedIdentity, type Trust, type TrustOptions } from './trust.ts';

export interface ConnectOptions extends TrustOptions {
  host: string;
  port?: number;
  /** Plain TCP, no TLS (the server must run with --insecure too). */
  insecure?: boolean;
  /** Where known hosts are remembered; null to use none. Default: the user's known_hosts file. */
  knownHosts?: KnownHosts | null;
  /** Connect + TLS + handshake must finish within this time. */
  timeoutMs?: number;
  /** Wire encodings (e.g. compression) to offer; used per transfer when the server accepts them. */
  encodings?: ClientEncodings;
  /**
   * PEM certificates of the certificate authorities to trust instead of the built-in (Mozilla) roots, as `--ca`
   * (tls/ca.ts reads and checks them).
   */
  ca?: string | string[];
}

/** `promise`, or a `timeout` FerryError after `ms` (and `onTimeout` run). */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout();
        reject(new FerryError('timeout', `${what} timed out after ${ms} ms`));
      }, ms);
    }),
  ]);
}

/** Why a chain was not verified, in words, for the codes OpenSSL gives most (the code follows in brackets). */
const _CHAIN_ERRORS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the certificate is self-signed',
  SELF_SIGNED_CERT_IN_CHAIN: 'its chain ends at a certificate authority that is not trusted here',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'its issuer is not a trusted certificate authority',
  UNABLE_TO_GET_ISSUER_CERT: 'its issuer is not a trusted certificate authority',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its issuer is not a trusted certificate authority',
  CERT_HAS_EXPIRED: 'the certificate has expired',
  CERT_NOT_YET_VALID: 'the certificate is not valid yet',
  CERT_SIGNATURE_FAILURE: 'the certificate\'s signature is wrong',
};

/**
 * The CA verdict on a TLS connection made with `rejectUnauthorized: false`: the chain verified against the trusted
 * CAs (`socket.authorized`) and the certificate issued for `host` (its DNS or IP names: tls.checkServerIdentity).
 */
function caVerdict(socket: tls.TLSSocket, host: string, cert: tls.PeerCertificate): CaVerdict {
  const chainError = socket.authorized ? null : String(socket.authorizationError ?? 'not verified');
  let nameError: string | null;
  try {
    nameError = tls.checkServerIdentity(host, cert)?.message ?? null;
  } catch (err) {
    nameError = (err as Error).message;
  }
  // A chain error about the name (Node checks it too when it can) is told by checkServerIdentity's words.
  const reason =
    chainError !== null && chainError !== 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? _CHAIN_ERRORS[chainError] ? `${_CHAIN_ERRORS[chainError]} (${chainError})` : chainError
      : (nameError ?? chainError);
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const issuer = first(cert.issuer?.CN) || first(cert.issuer?.O) || 'an unnamed issuer';
  const expires = new Date(cert.valid_to ?? '');
  return {
    valid: reason === null,
    reason: reason === null ? null : escapeText(reason, 300),
    issuer: escapeText(issuer, 100),
    validTo: Number.isNaN(expires.getTime()) ? '' : expires.toISOString().slice(0, 10),
  };
}

interface OpenedSocket {
  socket: net.Socket;
  /** The server certificate's fingerprint and CA verdict; null for plain TCP. */
  presented: PresentedIdentity | null;
}

/**
 * Opens a TCP (or TLS 1.3) connection and reads the server certificate's fingerprint and CA verdict; nothing is
 * sent yet.
 */
async function openSocket(host: string, port: number, insecure: boolean, timeoutMs: number, ca: string | string[] | undefined): Promise<OpenedSocket> {
  const where = formatAddress(host, port);
  const socket = insecure
    ? net.connect({ host, port })
    : tls.connect({
        host,
        port,
        ...(net.isIP(host) ? {} : { servername: host }),
        // Not refused here: the fingerprint and the CA verdict are weighed together (trust.ts), before anything is sent.
        rejectUnauthorized: false,
        ...(ca !== undefined ? { ca } : {}),
        minVersion: 'TLSv1.3',
        // The server's port also answers browsers (HTTPS); ALPN says this is the ferry protocol. (A ferry server that
        // predates the page ignores it: a client offering nothing, or this, is a ferry client there too.)
        ALPNProtocols: ['ferry/1'],
      });
  const ready = new Promise<void>((resolve, reject) => {
    socket.once(insecure ? 'connect' : 'secureConnect', () => resolve());
    socket.once('error', reject);
    socket.once('close', () => reject(new FerryError('connection_lost', `Connection to ${where} closed during set-up`)));
  });
  try {
    await withTimeout(ready, timeoutMs, `Connecting to ${where}`, () => socket.destroy());
  } catch (err) {
    socket.destroy();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED') throw new FerryError('connection_lost', `Cannot connect to ${where}: connection refused`);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new FerryError('connection_lost', `Cannot connect to ${where}: unknown host`);
    if (err instanceof FerryError) throw err;
    throw new FerryError('connection_lost', `Cannot connect to ${where}: ${(err as Error).message}`);
  }
  if (insecure) return { socket, presented: null };
  const tlsSocket = socket as tls.TLSSocket;
  const cert = tlsSocket.getPeerCertificate();
  if (!cert?.fingerprint256) {
    socket.destroy();
    throw new Error(`Server ${where} presented no certificate`);
  }
  return { socket, presented: { host, port, fingerprint: fingerprintFromHex(cert.fingerprint256), ca: caVerdict(tlsSocket, host, cert) } };
}

/**
 * Opens a TLS connection only to read the server's certificate: its fingerprint and whether a certificate authority
 * (the built-in roots, or `ca`) verifies it for `host`; then closes it. Nothing of the protocol is sent. For a
 * caller that must decide before connecting (`ferry batch`, for a server neither pinned nor known).
 *
 * @example
 * ```ts
 * const { ca } = await probeIdentity({ host: 'files.example.org', port: 2121 });
 * if (!ca.valid) console.error(`not verified by a CA: ${ca.reason}`);
 * ```
 */
export async function probeIdentity(options: { host: string; port: number; ca?: string | string[]; timeoutMs?: number }): Promise<PresentedIdentity> {
  const { socket, presented } = await openSocket(options.host, options.port, false, options.timeoutMs ?? 15_000, options.ca);
  // Closed gracefully, so that the server sees a finished handshake and a client that left (a reset at once shows in
  // its log as a failed handshake); the socket goes when the server closes its side, or after a second.
  socket.end();
  setTimeout(() => socket.destroy(), 1000).unref();
  return presented as PresentedIdentity;
}

/**
 * Connects, checks the server's identity (pinned fingerprint, known hosts, a certificate authority, or the user's
 * answer; trust.ts), and completes the handshake. Nothing secret is sent before the identity check has passed.
 */
export async function connect(options: ConnectOptions): Promise<FerryClient> {
  const { host } = options;
  const port = options.port ?? DEFAULT_PORT;
  const insecure = options.insecure === true;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const knownHosts = options.knownHosts === undefined ? new KnownHosts() : options.knownHosts;
  let { socket, presented } = await openSocket(host, port, insecure, timeoutMs, options.ca);
  let trust: Trust | null = null;
  if (presented) {
    try {
      trust = await checkIdentity(presented, options, knownHosts);
      if (trust.status === 'asked') {
        // The user may have taken a while to answer; start afresh, pinned to what they accepted.
        socket.destroy();
        const accepted = presented.fingerprint;
        ({ socket, presented } = await openSocket(host, port, insecure, timeoutMs, options.ca));
        if (presented?.fingerprint !== accepted) throw new Error(`Server ${formatAddress(host, port)} changed its fingerprint while you were deciding; refusing`);
      }
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }
  const client = new FerryClient(socket, host, port, presented?.fingerprint ?? null, options.encodings ?? null, trust);
  try {
    await withTimeout(client.ready, timeoutMs, 'Handshake', () => socket.destroy());
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return client;
}
