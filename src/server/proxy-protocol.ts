import { BlockList, isIP, type Socket } from 'node:net';
import { Command, IPv4ProxyAddress, IPv6ProxyAddress, V1ProxyProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import { canonicalIp } from '../core/address.ts';

/** A connection's real client, as a balancer's PROXY header gives it. */
export interface Peer {
  ip: string;
  port: number;
}

/**
 * The balancers whose connections carry a PROXY header (HAProxy's `send-proxy` / `send-proxy-v2`): addresses or
 * CIDR blocks (`10.0.0.0/8`, `::1/128`, `192.0.2.7`), from `--proxy-protocol`. Throws an Error naming a bad entry.
 */
export class ProxyAllowList {
  readonly #list = new BlockList();
  readonly entries: readonly string[];

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(entry.trim());
      const address = m?.[1] ?? '';
      const family = isIP(address);
      const prefix = m?.[2] === undefined ? (family === 6 ? 128 : 32) : Number(m[2]);
      if (family === 0 || prefix > (family === 6 ? 128 : 32)) {
        throw new Error(`Invalid --proxy-protocol '${entry.slice(0, 60)}': use addresses or CIDR blocks such as 10.0.0.0/8 or ::1/128`);
      }
      this.#list.addSubnet(address, prefix, family === 6 ? 'ipv6' : 'ipv4');
    }
    this.entries = entries.map((e) => e.trim());
  }

  /** Whether a connection from `ip` (as the socket gives it; IPv4-mapped IPv6 counts as IPv4) comes from a balancer. */
  allows(ip: string): boolean {
    const plain = canonicalIp(ip);
    const family = isIP(plain);
    return family !== 0 && this.#list.check(plain, family === 6 ? 'ipv6' : 'ipv4');
  }
}

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** The longest v1 header (the spec's 107 bytes, CRLF included). */
const V1_MAX = 107;
/** The longest v2 header taken: 16 bytes and addresses, with room for a balancer's TLVs. */
const V2_MAX = 16 + 2048;

/**
 * What the first bytes of a connection are: `more` (too few to tell), a PROXY header of `length` bytes (`v1` or
 * `v2`), `none` (something else: a TLS ClientHello, ferry's preamble), or `bad` (a PROXY header that is malformed
 * or too long).
 */
export function examine(bytes: Buffer): { kind: 'more' } | { kind: 'none' } | { kind: 'bad'; why: string } | { kind: 'v1' | 'v2'; length: number } {
  const v1 = bytes.subarray(0, V1_PREFIX.length);
  const v2 = bytes.subarray(0, V2_SIGNATURE.length);
  if (v1.equals(V1_PREFIX.subarray(0, v1.length))) {
    if (bytes.length < V1_PREFIX.length) return { kind: 'more' };
    const end = bytes.indexOf('\r\n', 0, 'latin1');
    if (end < 0 || end + 2 > V1_MAX) return bytes.length >= V1_MAX ? { kind: 'bad', why: 'a PROXY v1 header longer than 107 bytes' } : { kind: 'more' };
    return { kind: 'v1', length: end + 2 };
  }
  if (v2.equals(V2_SIGNATURE.subarray(0, v2.length))) {
    if (bytes.length < 16) return { kind: 'more' };
    const length = 16 + bytes.readUInt16BE(14);
    if (length > V2_MAX) return { kind: 'bad', why: `a PROXY v2 header of ${length} bytes` };
    return bytes.length < length ? { kind: 'more' } : { kind: 'v2', length };
  }
  return { kind: 'none' };
}

/**
 * The client a complete PROXY header names, or null where it names none (v1 `UNKNOWN`, v2 `LOCAL` — a balancer's
 * own health check — or a family other than TCP over IPv4/IPv6). Throws an Error when the header is malformed.
 */
export function peerOf(kind: 'v1' | 'v2', header: Buffer): Peer | null {
  if (kind === 'v1') {
    const text = header.toString('latin1');
    if (/^PROXY UNKNOWN[ \r]/.test(text)) return null;
    let parsed: V1ProxyProtocol;
    try {
      parsed = V1ProxyProtocol.parse(text);
    } catch {
      throw new Error('a malformed PROXY v1 header');
    }
    const ip = parsed.source.ipAddress;
    if (isIP(ip) === 0 || !Number.isInteger(parsed.source.port)) throw new Error('a malformed PROXY v1 header');
    return { ip: normalIp(ip), port: parsed.source.port };
  }
  let parsed: V2ProxyProtocol;
  try {
    parsed = V2ProxyProtocol.parse(header);
  } catch {
    throw new Error('a malformed PROXY v2 header');
  }
  if (parsed.command === Command.LOCAL) return null;
  const a = parsed.proxyAddress;
  if (a instanceof IPv4ProxyAddress) return { ip: a.sourceAddress.address.join('.'), port: a.sourcePort };
  if (a instanceof IPv6ProxyAddress) {
    const b = a.sourceAddress.address;
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push((((b[i] ?? 0) << 8) | (b[i + 1] ?? 0)).toString(16));
    return { ip: normalIp(groups.join(':')), port: a.sourcePort };
  }
  return null;
}

/** An address as the server writes it: IPv6 in its shortest lowercase form (RFC 5952, via URL), IPv4-mapped as IPv4. */
function normalIp(ip: string): string {
  return canonicalIp(isIP(ip) === 6 ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip);
}

/**
 * Reads what comes before TLS on a connection accepted with `--proxy-protocol`, and gives the rest back to the
 * socket. From a balancer (`fromBalancer`) a PROXY header (v1 or v2) must come first: resolves to the client it
 * names (null: the balancer's own, e.g. a health check). From anyone else no PROXY header may come: resolves to
 * null (the socket's own address). Rejects with an Error saying why the connection is refused; never waits longer
 * than `timeoutMs`.
 */
export function readProxyHeader(socket: Socket, fromBalancer: boolean, timeoutMs: number): Promise<Peer | null> {
  return new Promise((resolve, reject) => {
    let got: Buffer = Buffer.alloc(0);
    const done = (err: Error | null, peer: Peer | null, used: number): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.pause();
      if (err !== null) return reject(err);
      if (used < got.length) socket.unshift(got.subarray(used));
      resolve(peer);
    };
    const onData = (chunk: Buffer): void => {
      got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
      const seen = examine(got);
      if (seen.kind === 'more') return;
      if (seen.kind === 'bad') return done(new Error(seen.why), null, 0);
      if (seen.kind === 'none') return fromBalancer ? done(new Error('no PROXY header from a balancer in --proxy-protocol'), null, 0) : done(null, null, 0);
      if (!fromBalancer) return done(new Error('a PROXY header from an address not in --proxy-protocol'), null, 0);
      try {
        done(null, peerOf(seen.kind, got.subarray(0, seen.length)), seen.length);
      } catch (err) {
        done(err as Error, null, 0);
      }
    };
    const onClose = (): void => done(new Error('closed before its PROXY header'), null, 0);
    const timer = setTimeout(() => done(new Error(`no PROXY header within ${timeoutMs} ms`), null, 0), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}
