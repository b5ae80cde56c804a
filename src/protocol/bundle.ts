import { FerryError } from '../core/errors.ts';
import { checkFields, type Spec } from './messages.ts';

/**
 * Bundles (feature `bundle`): many small files as one stream of records in the DATA frames of one request, so
 * that a tree of thousands of files costs a few large frames instead of three frames, two JSON messages and a
 * reply per file. A record:
 *
 *   u32 BE  header length (1 ... maxMessage)
 *   header  a UTF-8 JSON object (its fields: RECORD_HEADERS below)
 *   body    `size` bytes, the file's content (records with a body only)
 *   digest  32 bytes, the SHA-256 of the body (records with a body only)
 *
 * Frame boundaries carry no meaning; a record may span frames and a frame may hold many records. The decoder
 * below is pure (bytes in, records out) and trusts nothing: a header that is not a JSON object of the declared
 * shape, a length out of bounds, or a body larger than the limit is `bad_message`.
 */

/** The header of each kind of record (field types as in messages.ts). */
export const RECORD_HEADERS = {
  /** `putmany`, client to server: one file to store. */
  put: { path: 'str', size: 'uint', mtime: 'uint?', overwrite: 'bool?', parents: 'bool?' },
  /** `getmany`, client to server: one file wanted (no body). */
  want: { path: 'str' },
  /** `getmany`, server to client: the file wanted at `index` (0 = the first `want`). */
  file: { index: 'uint', size: 'uint', mtime: 'uint' },
} as const satisfies Record<string, Spec>;

export type RecordKind = keyof typeof RECORD_HEADERS;
export interface PutHeader {
  path: string;
  size: number;
  mtime?: number;
  overwrite?: boolean;
  parents?: boolean;
}
export interface WantHeader {
  path: string;
}
export interface FileHeader {
  index: number;
  size: number;
  mtime: number;
}
export interface RecordHeaders {
  put: PutHeader;
  want: WantHeader;
  file: FileHeader;
}

/** Whether records of a kind carry a body and its digest. */
const HAS_BODY: { readonly [K in RecordKind]: boolean } = { put: true, want: false, file: true };

export const DIGEST_SIZE = 32;
const LENGTH_SIZE = 4;

/** One decoded record: its header, and for records with a body the body (a buffer of its own) and its digest. */
export interface BundleRecord<K extends RecordKind> {
  header: RecordHeaders[K];
  body: Buffer | null;
  digest: Buffer | null;
}

export interface RecordLimits {
  /** Largest header in bytes (the receiver's maxMessage). */
  maxHeader: number;
  /** Largest body in bytes (the receiver's maxData). */
  maxBody: number;
  /**
   * A body that lies whole in one of the pieces pushed may be a view of that piece instead of a copy: only for
   * pieces that are not reused afterwards (default false).
   */
  views?: boolean;
}

/** The bytes of a record's header: its length, then its JSON. */
export function encodeRecordHeader<K extends RecordKind>(kind: K, header: RecordHeaders[K]): Buffer {
  void kind;
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.allocUnsafe(LENGTH_SIZE + json.length);
  out.writeUInt32BE(json.length, 0);
  json.copy(out, LENGTH_SIZE);
  return out;
}

/** The size of a whole record with a body of `size` bytes and this encoded header. */
export function recordSize(header: Buffer, size: number): number {
  return header.length + size + DIGEST_SIZE;
}

function parseHeader<K extends RecordKind>(kind: K, bytes: Buffer): RecordHeaders[K] {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new FerryError('bad_message', 'A bundle record header is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FerryError('bad_message', 'A bundle record header is not a JSON object');
  checkFields(`${kind} record`, RECORD_HEADERS[kind], value as Record<string, unknown>);
  return value as RecordHeaders[K];
}

type Phase = 'length' | 'header' | 'body' | 'digest';

/**
 * Turns the bytes of a bundle stream, in pieces of any size, into records. Bodies are copied into buffers of
 * their own (they outlive the frames they came in) unless `views` allows otherwise; a body is filled as its
 * bytes arrive, so a record never needs more than its own size in memory.
 */
export class RecordDecoder<K extends RecordKind> {
  readonly #kind: K;
  readonly #limits: RecordLimits;
  readonly #onRecord: (record: BundleRecord<K>) => void;
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  #phase: Phase = 'length';
  #headerLength = 0;
  #header: RecordHeaders[K] | null = null;
  #body: Buffer | null = null;
  #filled = 0;
  /** Records decoded so far. */
  count = 0;

  constructor(kind: K, limits: RecordLimits, onRecord: (record: BundleRecord<K>) => void) {
    this.#kind = kind;
    this.#limits = limits;
    this.#onRecord = onRecord;
  }

  /** Between two records (the stream may end here). */
  get atBoundary(): boolean {
    return this.#phase === 'length' && this.#buffered === 0;
  }

  /** Decodes what `chunk` completes; throws `bad_message` for a malformed stream (nothing after it is decoded). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    for (;;) {
      switch (this.#phase) {
        case 'length': {
          if (this.#buffered < LENGTH_SIZE) return;
          const length = this.#take(LENGTH_SIZE).readUInt32BE(0);
          if (length === 0 || length > this.#limits.maxHeader) {
            throw new FerryError('bad_message', `A bundle record header of ${length} bytes (1 to ${this.#limits.maxHeader} allowed)`);
          }
          this.#headerLength = length;
          this.#phase = 'header';
          break;
        }
        case 'header': {
          if (this.#buffered < this.#headerLength) return;
          const header = parseHeader(this.#kind, this.#take(this.#headerLength));
          if (!HAS_BODY[this.#kind]) {
            this.count++;
            this.#phase = 'length';
            this.#onRecord({ header, body: null, digest: null });
            break;
          }
          const size = (header as { size: number }).size;
          if (size > this.#limits.maxBody) {
            throw new FerryError('bad_message', `A bundle record of ${size} bytes (at most ${this.#limits.maxBody} in a bundle)`);
          }
          this.#header = header;
          const first = this.#chunks[0];
          if (this.#limits.views === true && first !== undefined && first.length >= size) {
            this.#body = first.subarray(0, size);
            this.#consume(size);
            this.#phase = 'digest';
            break;
          }
          this.#body = Buffer.allocUnsafeSlow(size);
          this.#filled = 0;
          this.#phase = 'body';
          break;
        }
        case 'body': {
          const body = this.#body as Buffer;
          while (this.#filled < body.length && this.#buffered > 0) {
            const first = this.#chunks[0] as Buffer;
            const n = Math.min(first.length, body.length - this.#filled);
            first.copy(body, this.#filled, 0, n);
            this.#filled += n;
            this.#consume(n);
          }
          if (this.#filled < body.length) return;
          this.#phase = 'digest';
          break;
        }
        case 'digest': {
          if (this.#buffered < DIGEST_SIZE) return;
          const digest = Buffer.from(this.#take(DIGEST_SIZE));
          const record = { header: this.#header as RecordHeaders[K], body: this.#body, digest };
          this.#header = null;
          this.#body = null;
          this.#phase = 'length';
          this.count++;
          this.#onRecord(record);
          break;
        }
      }
    }
  }

  /** The next `n` buffered bytes (a view when they lie in one chunk, else a copy). */
  #take(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      this.#consume(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.#chunks[0] as Buffer;
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      at += k;
      this.#consume(k);
    }
    return out;
  }

  #consume(n: number): void {
    this.#buffered -= n;
    const first = this.#chunks[0] as Buffer;
    if (n === first.length) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
  }
}
