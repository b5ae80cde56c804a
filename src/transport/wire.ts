import type { Duplex } from 'node:stream';
import { FerryError } from '../core/errors.ts';
import { FrameDecoder, FrameKind, HEADER_SIZE, PREAMBLE, encodeData, encodeMessage, writeHeader, type Limits } from '../protocol/mod.ts';

/** What a Wire runs over: a TCP or TLS socket, or any byte stream (a WebSocket's, whose messages carry the bytes). */
export type ByteStream = Duplex & { setNoDelay?(noDelay?: boolean): unknown };

/** Frames up to this size are held to go out with others written in the same turn (see `Wire.hold`). */
const SMALL_FRAME = 64 * 1024;

export interface WireHandlers {
  onMessage(id: number, body: Buffer): void;
  onData(id: number, chunk: Buffer, last: boolean): void;
  /** The connection is gone: `error` is set when it ended badly (protocol error, reset, timeout). */
  onClose(error: Error | null): void;
}

/**
 * What sends ferry frames to a peer and lets its reading be paused: a `Wire` over a socket, or anything else that
 * carries the same frames (a WebSocket, a test's fake). Sessions and clients speak through this, never a socket.
 */
export interface FrameTransport {
  /** Sends a control message; false means the buffer is full and the caller should `await drained()`. */
  send(id: number, message: object): boolean;
  /** Sends one DATA frame; returns as `send`. */
  sendData(id: number, payload: Uint8Array): boolean;
  /**
   * Sends one DATA frame built in place (the payload after HEADER_SIZE free bytes); `onWritten` is called once the
   * transport no longer needs `frame`. Returns as `send`.
   */
  sendFrame(id: number, frame: Buffer, onWritten: () => void): boolean;
  /** Resolves when the transport can take more (at once when it is not full, or closed). */
  drained(): Promise<void>;
  /** Stops reading from the peer until as many `resume` calls. */
  pause(): void;
  resume(): void;
  /** Sends a final error (a FerryError) and closes; closes at once for any other error. */
  fail(err: Error): void;
  /** Ends the connection politely, after what is written. */
  end(): void;
  readonly isClosed: boolean;
}

/**
 * Glues a socket (TCP or TLS) to the pure frame decoder and encoder. Sends the preamble first, checks the
 * peer's. Owns nothing else: sessions and clients decide what frames mean. Reading can be paused by
 * several independent holders (each transfer that is behind), and resumes when all have let go.
 */
export class Wire implements FrameTransport {
  readonly decoder: FrameDecoder;
  private closed = false;
  private pauses = 0;
  /** The peer has ended its side: it will not read what we send. */
  private peerEnded = false;
  private drainWaiters: Array<() => void> = [];
  /** Small frames written in this turn of the event loop wait here, to go out together (see `hold`). */
  private corked = false;
  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  };
  /** Bytes received and sent, including framing (for wire-level statistics). */
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    readonly socket: ByteStream,
    private readonly handlers: WireHandlers,
    limits: Limits,
  ) {
    this.decoder = new FrameDecoder(handlers, { ...limits }, true);
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      try {
        this.decoder.push(chunk);
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
    socket.on('drain', () => this.flushDrain());
    socket.on('error', (err) => this.finish(err));
    socket.on('close', () => {
      const clean = this.decoder.atBoundary;
      // A peer or network that dies mid-frame is a lost connection (retryable: a download keeps its part for a resume).
      this.finish(clean ? null : new FerryError('connection_lost', 'Connection closed in the middle of a frame'));
    });
    socket.on('end', () => {
      // The peer half-closed: it reads no more either (ferry never half-closes to keep listening), so a writer
      // waiting for a drain would wait for ever (on Deno the process even exits quietly under it): release it,
      // so it finds the peer's last message (a stopping server's error) or the closed connection.
      this.peerEnded = true;
      this.flushDrain();
      if (!this.closed) socket.end();
    });
    this.writeRaw(Buffer.from(PREAMBLE));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Limits the decoder enforces (raised or lowered after negotiation). */
  setLimits(limits: Limits): void {
    this.decoder.limits = { ...limits };
  }

  send(id: number, message: object): boolean {
    this.hold();
    return this.writeRaw(encodeMessage(id, message));
  }

  /**
   * Small frames (messages, small DATA) written during one turn of the event loop are held (the socket is corked)
   * and go out together when the turn's callbacks and promise jobs are done: one TLS record and one system call
   * for the replies to many pipelined requests, instead of one each. A large DATA frame is not held: what waits
   * goes out first, then the frame on its own (a TLS socket copies the buffers of a corked write into one).
   */
  private hold(): void {
    if (this.corked || this.closed) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(this.uncork);
  }

  /** A DATA frame of `size` bytes is about to be written: held with the others if small, else on its own. */
  private holdIfSmall(size: number): void {
    if (size <= SMALL_FRAME) this.hold();
    else this.uncork();
  }

  /** Sends one DATA frame; false means the socket buffer is full and the caller should `await drained()`. */
  sendData(id: number, payload: Uint8Array): boolean {
    if (this.closed) return false;
    this.holdIfSmall(payload.length);
    const [header, body] = encodeData(id, payload);
    this.socket.cork();
    this.socket.write(header);
    const ok = this.socket.write(body);
    this.socket.uncork();
    this.bytesOut += header.length + body.length;
    return ok;
  }

  /**
   * Sends one DATA frame built in place: `frame` holds the payload after HEADER_SIZE bytes left free for the
   * header, so header and payload go out as one buffer (a TLS socket copies the buffers of a writev into one
   * before encrypting; a lone buffer is encrypted where it is). `onWritten` is called once the socket no longer
   * needs `frame` (written, or the connection gone), so that the caller may reuse it. Returns as sendData.
   */
  sendFrame(id: number, frame: Buffer, onWritten: () => void): boolean {
    if (this.closed) {
      onWritten();
      return false;
    }
    this.holdIfSmall(frame.length);
    writeHeader(frame, FrameKind.DATA, id, frame.length - HEADER_SIZE);
    this.bytesOut += frame.length;
    return this.socket.write(frame, () => onWritten());
  }

  /** Resolves when the socket's write buffer has drained (or at once when it is not full or closed). */
  drained(): Promise<void> {
    if (this.closed || this.peerEnded || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  pause(): void {
    if (this.pauses++ === 0) this.socket.pause();
  }

  resume(): void {
    if (this.pauses > 0 && --this.pauses === 0 && !this.closed) this.socket.resume();
  }

  /** Sends a final error (id 0) and closes after it is flushed. */
  fail(err: Error): void {
    if (this.closed) return;
    const ferr = err instanceof FerryError ? err : null;
    if (ferr) {
      this.send(0, { t: 'error', code: ferr.code, message: ferr.message });
      this.socket.end();
      // Do not wait forever for a peer that does not read.
      setTimeout(() => this.socket.destroy(), 2000).unref();
    } else {
      this.socket.destroy();
    }
    this.finish(err);
  }

  /** Ends the connection politely (after pending writes). */
  end(): void {
    if (this.closed) return;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  destroy(err?: Error): void {
    this.socket.destroy();
    this.finish(err ?? null);
  }

  private writeRaw(buf: Buffer): boolean {
    if (this.closed) return false;
    this.bytesOut += buf.length;
    return this.socket.write(buf);
  }

  private flushDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private finish(error: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.flushDrain();
    this.handlers.onClose(error);
  }
}
