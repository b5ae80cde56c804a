import { Buffer } from 'node:buffer';
import { HEADER_SIZE } from '../protocol/mod.ts';
import type { FrameTransport } from './wire.ts';

/**
 * Packs a stream of bytes (a bundle's records, protocol/bundle.ts) into the DATA frames of one request: the
 * bytes are copied into frames of `frameSize` payload bytes, each built in place after its header so that it
 * goes out as one buffer, and a full frame is sent at once. What is packed and not yet sent goes out with
 * `flush`. Frame buffers come back for reuse once the transport is done with them.
 */
export class FramePacker {
  readonly #transport: Pick<FrameTransport, 'sendFrame' | 'isClosed'>;
  readonly #id: number;
  readonly #frameSize: number;
  #frame: Buffer | null = null;
  #at = HEADER_SIZE;
  readonly #spare: Buffer[] = [];
  #flushing = false;
  /** Bytes packed so far. */
  bytes = 0;

  constructor(transport: Pick<FrameTransport, 'sendFrame' | 'isClosed'>, id: number, frameSize: number) {
    this.#transport = transport;
    this.#id = id;
    this.#frameSize = frameSize;
  }

  /** Whether bytes wait to be sent. */
  get pending(): boolean {
    return this.#at > HEADER_SIZE;
  }

  /** Appends `bytes`; returns false when the transport's buffer is full (the caller should wait for a drain). */
  write(bytes: Uint8Array): boolean {
    let ok = true;
    let from = 0;
    this.bytes += bytes.length;
    while (from < bytes.length) {
      const frame = (this.#frame ??= this.#spare.pop() ?? Buffer.allocUnsafeSlow(HEADER_SIZE + this.#frameSize));
      const n = Math.min(bytes.length - from, frame.length - this.#at);
      frame.set(bytes.subarray(from, from + n), this.#at);
      this.#at += n;
      from += n;
      if (this.#at === frame.length) ok = this.flush() && ok;
    }
    return ok;
  }

  /** Sends what is packed once this turn of the event loop is over (what else is packed in it goes along). */
  flushSoon(): void {
    if (this.#flushing || !this.pending) return;
    this.#flushing = true;
    setImmediate(() => {
      this.#flushing = false;
      this.flush();
    });
  }

  /** Sends what is packed; returns as `write`. */
  flush(): boolean {
    const frame = this.#frame;
    if (frame === null || this.#at === HEADER_SIZE) return true;
    const length = this.#at;
    this.#frame = null;
    this.#at = HEADER_SIZE;
    if (this.#transport.isClosed) return false;
    return this.#transport.sendFrame(this.#id, frame.subarray(0, length), () => {
      if (this.#spare.length < 4) this.#spare.push(frame);
    });
  }
}
