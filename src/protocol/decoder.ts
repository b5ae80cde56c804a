import { FerryError } from '../core/errors.ts';
import { FrameKind, HEADER_SIZE, PREAMBLE, type Limits } from './frame.ts';

export interface DecoderSink {
  /** A complete MSG frame; `body` is the raw JSON payload. */
  onMessage(id: number, body: Buffer): void;
  /**
   * A piece of a DATA frame's payload, delivered as it arrives (no buffering of large frames).
   * `last` is true on the piece that completes the frame.
   */
  onData(id: number, chunk: Buffer, last: boolean): void;
}

const enum State {
  Preamble,
  Header,
  Message,
  Data,
  Failed,
}

/**
 * Byte-in, frame-out state machine. It never allocates more than `maxMessage` for a message and never
 * buffers DATA payloads; once it has failed it stays failed and ignores further input.
 */
export class FrameDecoder {
  private state: State;
  private preambleSeen = 0;
  private readonly header = Buffer.alloc(HEADER_SIZE);
  private headerSeen = 0;
  private id = 0;
  private remaining = 0;
  private message: Buffer | null = null;
  private messageSeen = 0;
  private failure: FerryError | null = null;

  constructor(
    private readonly sink: DecoderSink,
    public limits: Limits,
    expectPreamble = true,
  ) {
    this.state = expectPreamble ? State.Preamble : State.Header;
  }

  get failed(): FerryError | null {
    return this.failure;
  }

  /** True between frames: a connection that ends here ended cleanly. */
  get atBoundary(): boolean {
    return (this.state === State.Header && this.headerSeen === 0) || (this.state === State.Preamble && this.preambleSeen === 0);
  }

  /** Feeds bytes. Throws the FerryError that ends the connection (and keeps throwing it afterwards). */
  push(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    try {
      this.consume(chunk);
    } catch (err) {
      this.state = State.Failed;
      this.failure = err instanceof FerryError ? err : new FerryError('bad_message', String(err));
      throw this.failure;
    }
  }

  private consume(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      switch (this.state) {
        case State.Preamble: {
          while (pos < chunk.length && this.preambleSeen < PREAMBLE.length) {
            if (chunk[pos] !== PREAMBLE[this.preambleSeen]) {
              throw new FerryError('bad_preamble', 'Garbage before the handshake: not a ferry peer');
            }
            pos++;
            this.preambleSeen++;
          }
          if (this.preambleSeen === PREAMBLE.length) this.state = State.Header;
          break;
        }
        case State.Header: {
          const take = Math.min(HEADER_SIZE - this.headerSeen, chunk.length - pos);
          chunk.copy(this.header, this.headerSeen, pos, pos + take);
          this.headerSeen += take;
          pos += take;
          if (this.headerSeen < HEADER_SIZE) break;
          this.headerSeen = 0;
          this.startFrame();
          break;
        }
        case State.Message: {
          const msg = this.message as Buffer;
          const take = Math.min(this.remaining, chunk.length - pos);
          chunk.copy(msg, this.messageSeen, pos, pos + take);
          this.messageSeen += take;
          this.remaining -= take;
          pos += take;
          if (this.remaining === 0) this.finishMessage();
          break;
        }
        case State.Data: {
          const take = Math.min(this.remaining, chunk.length - pos);
          const piece = chunk.subarray(pos, pos + take);
          this.remaining -= take;
          pos += take;
          const last = this.remaining === 0;
          if (last) this.state = State.Header;
          this.sink.onData(this.id, piece, last);
          break;
        }
        case State.Failed:
          return;
      }
    }
  }

  private startFrame(): void {
    const kind = this.header[0];
    this.id = this.header.readUInt32BE(1);
    const length = this.header.readUInt32BE(5);
    if (kind === FrameKind.MSG) {
      if (length > this.limits.maxMessage) {
        throw new FerryError('frame_too_large', `Message of ${length} bytes exceeds the limit of ${this.limits.maxMessage}`);
      }
      if (length === 0) throw new FerryError('bad_message', 'Empty control message');
      this.message = Buffer.allocUnsafe(length);
      this.messageSeen = 0;
      this.remaining = length;
      this.state = State.Message;
    } else if (kind === FrameKind.DATA) {
      if (length > this.limits.maxData) {
        throw new FerryError('frame_too_large', `Data frame of ${length} bytes exceeds the limit of ${this.limits.maxData}`);
      }
      if (this.id === 0) throw new FerryError('unexpected_message', 'Data frame without a request id');
      this.remaining = length;
      if (length === 0) this.sink.onData(this.id, Buffer.alloc(0), true);
      else this.state = State.Data;
    } else {
      throw new FerryError('bad_frame', `Unknown frame kind ${kind}`);
    }
  }

  private finishMessage(): void {
    const body = this.message as Buffer;
    this.message = null;
    this.state = State.Header;
    this.sink.onMessage(this.id, body);
  }
}
