import { DEFAULT_LIMITS, type Limits } from '../protocol/mod.ts';

/** Files in an S3-compatible object store instead of `<dataDir>/homes` (storage/s3). */
export interface ObjectStoreOptions {
  /** `s3://BUCKET[/PREFIX]`. */
  url: string;
  /** A custom endpoint (Ceph, Swift, MinIO, R2...); absent: AWS. */
  endpoint?: string;
  region?: string;
}

export interface ServerOptions {
  /**
   * Address to listen on. The default (`null`) listens on every address: IPv6 and IPv4 together on one
   * dual-stack socket (`::`), or IPv4 alone (`0.0.0.0`) where the host has no IPv6.
   */
  host: string | null;
  port: number;
  /** Everything lives here: identity/, users.json, audit.log, homes/, .partial/. */
  dataDir: string;
  signup: 'open' | 'closed';
  /** Plain TCP instead of TLS (explicit opt-in, warned about). */
  insecure: boolean;
  limits: Limits;
  /** Preamble + hello must arrive within this time. */
  handshakeTimeoutMs: number;
  /** A connection must log in within this time of connecting. */
  authTimeoutMs: number;
  /** A logged-in connection with no traffic at all for this long is closed. */
  idleTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  /**
   * Balancers (addresses or CIDR blocks) whose connections start with a PROXY header (v1 or v2) naming the real
   * client, which then counts for per-address limits, throttles and audit lines; a PROXY header from anyone else is
   * refused. Empty: no header is read.
   */
  proxyProtocol: string[];
  /** Uploads plus downloads one user may have in flight, across all their connections; more get `busy`. */
  maxTransfersPerUser: number;
  /** Largest declared upload size in bytes; a larger `put` is refused (`too_large`) before any byte is stored. */
  maxUploadBytes: number;
  /**
   * Free space the data directory's file system must keep after an upload's remaining bytes; an upload that
   * would eat into it is refused with `no_space` before it starts. 0 checks only that the bytes fit.
   */
  minFreeBytes: number;
  /** Accounts one address may create per hour by sign-up. */
  signupsPerAddressPerHour: number;
  /** Partial uploads older than this are swept at start-up. */
  partialMaxAgeMs: number;
  /** Files in an object store; null (the default): on the local disk under `<dataDir>/homes`. */
  objectStore: ObjectStoreOptions | null;
  /**
   * The browser page on the same port (HTTPS, chosen by TLS ALPN `http/1.1`; a client offering `ferry/1` or nothing
   * speaks the protocol). Needs TLS: off with `insecure`.
   */
  web: boolean;
  /**
   * A certificate (PEM, the chain after it, e.g. Let's Encrypt's fullchain.pem) and its key to present instead of the
   * self-signed identity: for the page and the protocol alike. null: the identity in the data directory (or database).
   */
  certificate: { certFile: string; keyFile: string } | null;
}

export const DEFAULT_SERVER_OPTIONS: ServerOptions = {
  host: null,
  port: 2121,
  dataDir: './ferry-data',
  signup: 'open',
  insecure: false,
  limits: { ...DEFAULT_LIMITS },
  handshakeTimeoutMs: 10_000,
  authTimeoutMs: 120_000,
  idleTimeoutMs: 15 * 60_000,
  maxConnections: 1024,
  maxConnectionsPerAddress: 32,
  proxyProtocol: [],
  maxTransfersPerUser: 32,
  maxUploadBytes: 2 ** 40, // 1 TiB
  minFreeBytes: 64 * 1024 * 1024,
  partialMaxAgeMs: 7 * 24 * 3600_000,
  signupsPerAddressPerHour: 20,
  objectStore: null,
  web: true,
  certificate: null,
};
