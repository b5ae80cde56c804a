import type { Transform } from 'node:stream';
import { FerryError } from '../../core/errors.ts';
import type { Upload } from '../../storage/storage.ts';
import { settled } from '../../transport/streams.ts';

const HIGH = 4 * 1024 * 1024;
const LOW = 1024 * 1024;

/**
 * Feeds an upload's wire bytes through a plugin's decoding stream (e.g. decompression) into the storage
 * upload, with backpressure both ways. The storage upload still enforces the declared size, so a stream
 * that expands past it is cut off there.
 */
export class DecodingWriter {
  private pending: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  private queued = 0;

  constructor(
    private readonly upload: Upload,
    private readonly transform: Transform,
    encoding: string,
  ) {
    transform.on('data', (chunk: Buffer) => {
      this.queued += chunk.length;
      if (this.queued > HIGH) transform.pause();
      this.pending = this.pending.then(async () => {
        if (this.failure) return;
        try {
          await upload.write([chunk]);
        } catch (err) {
          this.failure ??= err as Error;
          transform.destroy();
        } finally {
          this.queued -= chunk.length;
          if (this.queued < LOW && transform.isPaused()) transform.resume();
        }
      });
    });
    transform.on('error', (err) => {
      this.failure ??= new FerryError('bad_encoding', `Cannot decode the ${encoding} data: ${err.message}`);
    });
  }

  async write(chunks: readonly Buffer[]): Promise<void> {
    for (const chunk of chunks) {
      if (this.failure) throw this.failure;
      if (!this.transform.write(chunk)) await this.drained();
    }
    if (this.queued > HIGH) await this.pending;
    if (this.failure) throw this.failure;
  }

  private drained(): Promise<void> {
    return settled(this.transform, 'drain');
  }

  /** Ends the wire stream and waits until every decoded byte is in the upload. */
  async finish(): Promise<void> {
    if (!this.failure && !this.transform.destroyed) {
      const ended = settled(this.transform, 'end');
      this.transform.end();
      await ended;
    }
    await this.pending;
    if (this.failure) throw this.failure;
  }

  destroy(): void {
    this.transform.destroy();
  }
}
