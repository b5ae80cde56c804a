import type { Transform } from 'node:stream';

/**
 * Wire encodings a client can use (e.g. compression), offered in the handshake as `encoding:<name>`.
 * The client library knows nothing about particular codecs: the CLI passes them in.
 */
export interface ClientEncodings {
  /** Encodings in order of preference. */
  names: readonly string[];
  /** File bytes → wire bytes, or null if unknown. */
  encoder(name: string): Transform | null;
  /** Wire bytes → file bytes, or null if unknown. */
  decoder(name: string): Transform | null;
  /** Whether encoding a file is worth it, judged from its name and first bytes. */
  worthEncoding(path: string, sample: Uint8Array): boolean;
}
