/** Something that writes buffers at a position, and may write fewer bytes than asked (a FileHandle, a LocalTarget). */
export interface PositionalWriter {
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
}

/**
 * Writes all of `chunks` at `position`, with as many `writev` calls as it takes: a write may take fewer bytes
 * than it was given (a full disk on the way, a signal). A write that takes none fails with `EIO`.
 *
 * @example
 * ```ts
 * await writevFully(handle, [header, body], 0);
 * ```
 */
export async function writevFully(target: PositionalWriter, chunks: readonly Buffer[], position: number): Promise<void> {
  let total = 0;
  for (const chunk of chunks) total += chunk.length;
  let done = 0;
  let rest = chunks as Buffer[];
  while (done < total) {
    const { bytesWritten } = await target.writev(rest, position + done);
    if (bytesWritten <= 0) throw Object.assign(new Error('the disk accepted no bytes'), { code: 'EIO' });
    done += bytesWritten;
    rest = skipBytes(rest, bytesWritten);
  }
}

/** `chunks` without their first `n` bytes (after a short write). */
export function skipBytes<T extends Uint8Array>(chunks: readonly T[], n: number): T[] {
  const rest: T[] = [];
  for (const chunk of chunks) {
    if (n >= chunk.length) {
      n -= chunk.length;
      continue;
    }
    rest.push(n > 0 ? (chunk.subarray(n) as T) : chunk);
    n = 0;
  }
  return rest;
}
