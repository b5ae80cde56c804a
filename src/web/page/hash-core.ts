/**
 * SHA-256 for uploads, driven by messages: streaming states by id (hash-wasm: WebCrypto has no streaming digest), and
 * the digest of a whole file at once by WebCrypto (`whole`: the browser's native SHA-256, several times faster than
 * hash-wasm's, but it needs all the bytes in memory). It runs in a Web Worker (hash-worker.ts), so the page's thread
 * goes on reading the file while the worker hashes (the two overlap: the hashing alone is the slowest part of an
 * upload from the page), and in the page itself if no worker can start.
 */
import { createSHA256, type IHasher } from 'hash-wasm';

/**
 * What the page asks: `update` carries bytes (transferred, not copied); `peek` is the digest so far, the state kept;
 * `whole` is the digest of all of `blob` (read into memory), answered as `digest` with its `seq`.
 */
export type HashRequest =
  | { t: 'update'; id: number; bytes: ArrayBuffer }
  | { t: 'whole'; id: number; seq: number; blob: Blob }
  | { t: 'peek'; id: number; seq: number }
  | { t: 'reset'; id: number }
  | { t: 'drop'; id: number };

/** What comes back: `done` when an update's bytes are hashed (its buffer returned), `digest` for a peek. */
export type HashReply = { t: 'done'; id: number } | { t: 'digest'; id: number; seq: number; hex: string } | { t: 'error'; id: number; message: string };

/** Handles requests in order (hash-wasm's module is compiled once and stays hot across files). */
export class HashCore {
  readonly #states = new Map<number, IHasher>();
  #tail: Promise<void> = Promise.resolve();

  constructor(private readonly reply: (r: HashReply) => void) {}

  handle(req: HashRequest): void {
    if (req.t === 'whole') {
      // Not in turn with the streaming states: the other uploads' chunks go on being hashed meanwhile.
      wholeDigest(req.blob).then(
        (hex) => this.reply({ t: 'digest', id: req.id, seq: req.seq, hex }),
        (err: unknown) => this.#failed(req.id, err),
      );
      return;
    }
    this.#tail = this.#tail.then(() => this.#run(req)).catch((err: unknown) => this.#failed(req.id, err));
  }

  #failed(id: number, err: unknown): void {
    this.reply({ t: 'error', id, message: String((err as Error)?.message ?? err) });
  }

  async #state(id: number): Promise<IHasher> {
    let h = this.#states.get(id);
    if (!h) {
      h = await createSHA256();
      h.init();
      this.#states.set(id, h);
    }
    return h;
  }

  /** The requests that take their turn with the streaming states (`whole` does not: see handle). */
  async #run(req: Exclude<HashRequest, { t: 'whole' }>): Promise<void> {
    if (req.t === 'drop') {
      this.#states.delete(req.id);
      return;
    }
    const h = await this.#state(req.id);
    if (req.t === 'update') {
      h.update(new Uint8Array(req.bytes));
      this.reply({ t: 'done', id: req.id });
    } else if (req.t === 'reset') {
      h.init();
    } else {
      const state = h.save();
      const hex = h.digest('hex');
      h.load(state);
      this.reply({ t: 'digest', id: req.id, seq: req.seq, hex });
    }
  }
}

/** The SHA-256 (hex) of all of `blob`, by WebCrypto: the blob is read into memory, and WebCrypto copies it once more. */
async function wholeDigest(blob: Blob): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}
