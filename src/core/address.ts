import { isIPv4, isIPv6 } from 'node:net';

/** The port a ferry server listens on unless told otherwise. */
export const DEFAULT_PORT = 2121;

/**
 * Parses a server address as people write it: `host`, `host:port`, `[v6]:port`, `[v6]` or a bare IPv6
 * address (`::1`, which cannot carry a port). The port defaults to 2121. Throws an Error naming the problem.
 *
 * @example
 * ```ts
 * parseAddress('files.example.org'); // { host: 'files.example.org', port: 2121 }
 * parseAddress('[::1]:9000');        // { host: '::1', port: 9000 }
 * parseAddress('::1');               // { host: '::1', port: 2121 }
 * ```
 */
export function parseAddress(target: string, defaultPort = DEFAULT_PORT): { host: string; port: number } {
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(target);
  let host: string;
  let port: string | undefined;
  if (bracket) {
    host = bracket[1] as string;
    port = bracket[2];
    if (!isIPv6(host)) throw new Error(`Cannot parse server address '${target}': '${host}' in brackets is not an IPv6 address`);
  } else if (isIPv6(target)) {
    host = target;
  } else {
    const i = target.lastIndexOf(':');
    host = i >= 0 ? target.slice(0, i) : target;
    port = i >= 0 ? target.slice(i + 1) : undefined;
    if (host.includes(':')) throw new Error(`Cannot parse server address '${target}': write an IPv6 address in brackets, as [${host}]:${port}`);
  }
  if (!host) throw new Error(`Cannot parse server address '${target}': no host`);
  const portNumber = port === undefined ? defaultPort : /^\d{1,5}$/.test(port) ? Number(port) : NaN;
  if (!Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
    throw new Error(`Cannot parse server address '${target}': port must be 1-65535`);
  }
  return { host, port: portNumber };
}

/**
 * `host:port`, with an IPv6 address in brackets: `[::1]:2121`.
 *
 * @example
 * ```ts
 * formatAddress('::1', 2121);       // '[::1]:2121'
 * formatAddress('127.0.0.1', 2121); // '127.0.0.1:2121'
 * ```
 */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * A peer's IP address as ferry shows and counts it: an IPv4 client of a dual-stack socket arrives as
 * `::ffff:a.b.c.d` and is the IPv4 address `a.b.c.d`, so that it is logged and throttled as the same client
 * whichever socket it came through.
 *
 * @example
 * ```ts
 * canonicalIp('::ffff:127.0.0.1'); // '127.0.0.1'
 * canonicalIp('::1');              // '::1'
 * ```
 */
export function canonicalIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m && isIPv4(m[1] as string) ? (m[1] as string) : ip;
}
