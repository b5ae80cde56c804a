import { createSHA256, type IHasher } from 'hash-wasm';
import type { BundleReply } from './jobs.ts';

/**
 * A SHA-256 kept in the commit worker for an upload elsewhere (the object-store driver's multipart uploads): each
 * part's bytes come in order, and each is answered with the hash state after it (hash-wasm's `save()`), which a
 * checkpoint can keep and any server can load to go on. hash-wasm is the SHA-256 whose state can be saved — Node's
 * cannot — and it is several times slower than Node's, hence off the event loop here.
 */
export class WorkerHash {
  readonly #id: number;
  #hasher: Promise<IHasher>;

  constructor(id: number, state: Uint8Array | undefined) {
    this.#id = id;
    this.#hasher = createSHA256().then((h) => {
      h.init();
      if (state !== undefined) h.load(state);
      return h;
    });
  }

  /** Hashes the next bytes; `post` gets the state after them (or why it failed), in the order the bytes came. */
  take(seq: number, chunks: readonly Uint8Array[], post: (reply: BundleReply) => void): void {
    this.#hasher = this.#hasher.then((h) => {
      try {
        for (const c of chunks) h.update(c);
        post({ bundle: this.#id, seq, outcomes: [], state: h.save() });
      } catch (err) {
        post({ bundle: this.#id, seq, outcomes: [], error: { code: 'internal', message: `Hashing failed: ${(err as Error)?.message ?? err}` } });
      }
      return h;
    });
  }
}
