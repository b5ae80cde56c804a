/**
 * The SHA-256 of an upload, computed off the page's thread, in one Web Worker for the whole page: either streamed (bytes
 * go to the worker a few chunks ahead while the page reads the next ones; its hash-wasm code stays compiled and hot
 * from file to file) or of a whole file at once (`whole`: the worker reads it and WebCrypto hashes it). If the worker
 * cannot start, the same code runs in the page.
 */
import { HashCore, type HashReply, type HashRequest } from './hash-core.ts';

/** The worker's address, set by scripts/build-web.mjs (its name carries a hash of its content). */
declare const HASH_WORKER_URL: string;

/** Chunks handed to the worker and not hashed yet, above which a sender waits. */
const DEPTH = 3;

interface Channel {
  post(req: HashRequest, transfer?: Transferable[]): void;
  readonly listeners: Set<(r: HashReply) => void>;
}

let channel: Channel | null = null;

function inPage(listeners: Set<(r: HashReply) => void>): Channel {
  const core = new HashCore((r) => listeners.forEach((l) => l(r)));
  return { post: (req) => core.handle(req), listeners };
}

function openChannel(): Channel {
  if (channel) return channel;
  const listeners = new Set<(r: HashReply) => void>();
  try {
    const worker = new Worker(HASH_WORKER_URL);
    worker.onmessage = (e: MessageEvent<HashReply>) => listeners.forEach((l) => l(e.data));
    worker.onerror = (e) => {
      // A worker that failed to load: what was sent to it is lost; the uploads in progress fail and later ones hash here.
      e.preventDefault();
      channel = inPage(listeners);
      listeners.forEach((l) => l({ t: 'error', id: -1, message: 'The hashing worker stopped' }));
    };
    channel = { post: (req, transfer = []) => worker.postMessage(req, transfer), listeners };
  } catch {
    channel = inPage(listeners);
  }
  return channel;
}

let nextId = 1;

/**
 * One streaming SHA-256.
 *
 * @example
 * ```ts
 * const h = new UploadHasher();
 * await h.update(await file.slice(0, 8 << 20).arrayBuffer()); // handed over: the buffer is detached
 * const hex = await h.digest();
 * h.close();
 * ```
 */
export class UploadHasher {
  readonly #id = nextId++;
  readonly #channel = openChannel();
  #sent = 0;
  #done = 0;
  #seq = 0;
  #error: Error | null = null;
  readonly #digests = new Map<number, (hex: string) => void>();
  #wake: Array<() => void> = [];
  readonly #listener = (r: HashReply) => {
    if (r.id !== this.#id && r.id !== -1) return;
    if (r.t === 'done') this.#done++;
    else if (r.t === 'digest') this.#digests.get(r.seq)?.(r.hex);
    else this.#error = new Error(r.message);
    const wake = this.#wake;
    this.#wake = [];
    wake.forEach((w) => w());
  };

  constructor() {
    this.#channel.listeners.add(this.#listener);
  }

  #changed(): Promise<void> {
    return new Promise((resolve) => this.#wake.push(resolve));
  }

  /** Hands `bytes` over (the buffer is transferred: do not use it again); resolves when more may be sent. */
  async update(bytes: ArrayBuffer): Promise<void> {
    if (this.#error) throw this.#error;
    this.#channel.post({ t: 'update', id: this.#id, bytes }, [bytes]);
    this.#sent++;
    while (this.#sent - this.#done >= DEPTH && !this.#error) await this.#changed();
    if (this.#error) throw this.#error;
  }

  /** The digest (hex) of everything handed over so far; the state is kept, so more may follow. */
  digest(): Promise<string> {
    return this.#answer((seq) => ({ t: 'peek', id: this.#id, seq }));
  }

  /**
   * The digest (hex) of all of `blob` at once, by the browser's native SHA-256 (WebCrypto): the blob is read into
   * memory, and WebCrypto copies it, so a file takes about twice its size for a moment (see budget.ts). Separate
   * from the streaming state.
   */
  whole(blob: Blob): Promise<string> {
    return this.#answer((seq) => ({ t: 'whole', id: this.#id, seq, blob }));
  }

  /** Sends the request made for a new sequence number and waits for the digest answered to it. */
  async #answer(request: (seq: number) => HashRequest): Promise<string> {
    if (this.#error) throw this.#error;
    const seq = ++this.#seq;
    const got: { hex?: string } = {};
    this.#digests.set(seq, (hex) => (got.hex = hex));
    this.#channel.post(request(seq));
    while (got.hex === undefined && !this.#error) await this.#changed();
    this.#digests.delete(seq);
    if (got.hex === undefined) throw this.#error ?? new Error('No digest');
    return got.hex;
  }

  /** Starts again from nothing. */
  reset(): void {
    this.#channel.post({ t: 'reset', id: this.#id });
  }

  /** Done with it: a digest still awaited (one the upload gave up on) ends with an error instead of waiting forever. */
  close(): void {
    this.#channel.post({ t: 'drop', id: this.#id });
    this.#channel.listeners.delete(this.#listener);
    this.#error ??= new Error('The upload is over');
    const wake = this.#wake;
    this.#wake = [];
    wake.forEach((w) => w());
  }
}
