import net from 'node:net';
import tls from 'node:tls';
import { DEFAULT_PORT, formatAddress } from '../core/address.ts';
import { FerryError } from '../core/errors.ts';
import { fingerprintFromHex } from '../tls/fingerprint.ts';
import { FerryClient } from './client.ts';
import type { ClientEncodings } from '../plugin/types.ts';
import { KnownHosts } from './known-hosts.ts';
import { checkIdentity, type TrustOptions } from './trust.ts';

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

/** Opens a TCP (or TLS 1.3) connection and reads the server certificate's fingerprint; nothing is sent yet. */
async function openSocket(host: string, port: number, insecure: boolean, timeoutMs: number): Promise<{ socket: net.Socket; fingerprint: string | null }> {
  const where = formatAddress(host, port);
  const socket = insecure
    ? net.connect({ host, port })
    : tls.connect({
        host,
        port,
        ...(net.isIP(host) ? {} : { servername: host }),
        rejectUnauthorized: false, // the certificate is self-signed: we check its fingerprint instead
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
  if (insecure) return { socket, fingerprint: null };
  const cert = (socket as tls.TLSSocket).getPeerCertificate();
  if (!cert?.fingerprint256) {
    socket.destroy();
    throw new Error(`Server ${where} presented no certificate`);
  }
  return { socket, fingerprint: fingerprintFromHex(cert.fingerprint256) };
}

/**
 * Connects, checks the server's identity (pinned fingerprint, known hosts, or the user's answer; trust.ts), and
 * completes the handshake. Nothing secret is sent before the identity check has passed.
 */
export async function connect(options: ConnectOptions): Promise<FerryClient> {
  const { host } = options;
  const port = options.port ?? DEFAULT_PORT;
  const insecure = options.insecure === true;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const knownHosts = options.knownHosts === undefined ? new KnownHosts() : options.knownHosts;
  let { socket, fingerprint } = await openSocket(host, port, insecure, timeoutMs);
  if (fingerprint) {
    try {
      const trusted = await checkIdentity(host, port, fingerprint, options, knownHosts);
      if (trusted === 'asked') {
        // The user may have taken a while to answer; start afresh, pinned to what they accepted.
        socket.destroy();
        const accepted = fingerprint;
        ({ socket, fingerprint } = await openSocket(host, port, insecure, timeoutMs));
        if (fingerprint !== accepted) throw new Error(`Server ${formatAddress(host, port)} changed its fingerprint while you were deciding; refusing`);
      }
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }
  const client = new FerryClient(socket, host, port, fingerprint, options.encodings ?? null);
  try {
    await withTimeout(client.ready, timeoutMs, 'Handshake', () => socket.destroy());
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return client;
}
