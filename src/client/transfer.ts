import { createHash, type Hash } from 'node:crypto';
import { FerryError } from '../core/errors.ts';
import type { ServerMessageOf } from '../protocol/messages.ts';
import type { Transform } from 'node:stream';
import type { FrameTransport } from '../transport/wire.ts';
import type { Mux } from './mux.ts';

/** Bytes of the file done so far (including a resumed prefix), and of the whole file. */
export interface TransferProgress {
  done: number;
  total: number;
}

/** How a verified upload or download went. */
export interface TransferResult {
  /** DATA bytes on the wire for this transfer (encoded bytes when an encoding was used; excludes framing). */
  wireBytes: number;
  /** The encoding used on the wire, or null for the bytes as they are. */
  encoding: string | null;
  size: number;
  sha256: string;
  /** Bytes that were already at the destination and were verified, not sent again. */
  resumedFrom: number;
  durationMs: number;
}

/**
 * A transfer verified, but its bytes are not the ones the caller asked for (`expectSha256`). Code
 * `digest_mismatch`, and not retryable: trying again moves the same bytes.
 */
export class UnexpectedDigestError extends FerryError {
  constructor(
    readonly path: string,
    readonly actual: string,
    readonly expected: string,
  ) {
    super('digest_mismatch', `'${path}' has sha256 ${actual}, not the expected ${expected}`);
    this.name = 'UnexpectedDigestError';
  }

  override get retryable(): boolean {
    return false;
  }
}

/** A file larger than a bundle carries (the peer's DATA limit): move it on its own. Not retryable as part of a bundle. */
export class TooLargeForBundle extends FerryError {
  constructor(path: string, max: number) {
    super('too_large', `'${path}' is larger than a bundle carries (${max} bytes): it goes on its own`);
    this.name = 'TooLargeForBundle';
  }

  override get retryable(): boolean {
    return false;
  }
}

/** What a transfer needs of the connection it runs on (FerryClient). */
export interface TransferLink {
  readonly mux: Mux;
  readonly wire: Pick<FrameTransport, 'send' | 'sendData' | 'sendFrame' | 'drained' | 'pause' | 'resume' | 'isClosed'>;
  readonly welcome: ServerMessageOf<'welcome'> | null;
  /** Encodings both sides agreed on, in this client's order of preference. */
  readonly agreedEncodings: string[];
  /** The transform of an agreed encoding: file bytes to wire bytes (`encoder`) or back. */
  encoder(name: string): Transform | null;
  decoder(name: string): Transform | null;
  /** Whether a file looks worth encoding, judged from its name and first bytes. */
  worthEncoding(path: string, sample: Uint8Array): boolean;
}

/** Reads of the first bytes of a local file (LocalFile, LocalTarget). */
interface Readable {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

/** SHA-256 of the first `length` bytes of a file, and the hash object to continue from there. */
export async function hashPrefix(file: Readable, length: number, chunk: number): Promise<{ hash: Hash; digest: string }> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(chunk, Math.max(length, 1)));
  let position = 0;
  while (position < length) {
    const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, length - position), position);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    position += bytesRead;
  }
  const digest = hash.copy().digest('hex');
  return { hash, digest };
}
