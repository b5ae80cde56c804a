/**
 * One file from the browser to the server, as the CLI sends it (docs/protocol.md, put): the bytes in DATA frames,
 * then the SHA-256 of the whole file — hashed here as the bytes go, with a streaming SHA-256 (hash-wasm; WebCrypto has
 * none) — so the server's verified commit applies unchanged and nothing becomes visible unless it matches. Files of
 * 1 MiB or more ask to resume: after a dropped connection or a reload, the same file chosen again continues from
 * what the server holds, once its SHA-256 of that part equals ours (hashed from the file, not trusted).
 */
import { createSHA256, type IHasher } from 'hash-wasm';
import { FerryPageError, type Connection, type Message } from './conn.ts';

/** The part of a file read and sent at a time (a DATA frame). */
const CHUNK = 256 * 1024;
const RESUME_FROM = 1024 * 1024;

export interface UploadProgress {
  /** Bytes the server has been sent (or already held) of this file. */
  sent: number;
  size: number;
  /** Where this upload started: the server's resume offset. */
  resumedFrom: number;
  /** 'hashing' while our copy of the server's part is checked. */
  phase: 'hashing' | 'sending' | 'verifying';
}

export interface UploadResult {
  size: number;
  sha256: string;
  resumedFrom: number;
}

/** Reads `[start, end)` of `file` in chunks, feeding each to `each`. */
async function readRange(file: Blob, start: number, end: number, each: (bytes: Uint8Array, at: number) => Promise<void> | void, cancelled: () => boolean): Promise<void> {
  for (let at = start; at < end; at += CHUNK) {
    if (cancelled()) throw new FerryPageError('cancelled', 'Cancelled');
    const bytes = new Uint8Array(await file.slice(at, Math.min(end, at + CHUNK)).arrayBuffer());
    await each(bytes, at);
  }
}

/**
 * Uploads `file` to `path`. `cancel` (an AbortSignal) stops it: the server keeps what it has of a resumable upload
 * for a later try, as when the connection drops.
 *
 * @example
 * ```ts
 * await uploadFile(conn, input.files[0], 'docs/report.pdf', { overwrite: true, onProgress: (p) => draw(p) });
 * ```
 */
export async function uploadFile(
  conn: Connection,
  file: File,
  path: string,
  options: { overwrite: boolean; onProgress: (p: UploadProgress) => void; signal?: AbortSignal },
): Promise<UploadResult> {
  const hasher: IHasher = await createSHA256();
  hasher.init();
  const size = file.size;
  const resume = size >= RESUME_FROM && conn.welcome.features.includes('resume');
  const id = conn.newId();
  let offered: { offset: number; sha256: string } | null = null;
  let offerArrived: () => void = () => {};
  const offer = new Promise<void>((r) => (offerArrived = r));
  let failed: FerryPageError | null = null;
  const done = conn
    .requestOn(id, { t: 'put', path, size, mtime: Math.floor(file.lastModified), overwrite: options.overwrite, parents: true, ...(resume ? { resume: true } : {}) }, (m: Message) => {
      if (m.t === 'resume') {
        offered = { offset: Number(m.offset), sha256: String(m.sha256) };
        offerArrived();
      }
    })
    .catch((err: FerryPageError) => {
      failed = err;
      offerArrived();
      throw err;
    });
  done.catch(() => {});
  const cancelled = () => failed !== null || options.signal?.aborted === true;
  const stop = () => {
    if (!conn.closed) conn.follow(id, { t: 'cancel' });
  };
  let from = 0;
  try {
    if (resume) {
      await offer;
      if (failed) throw failed;
      const o = offered as { offset: number; sha256: string } | null;
      if (o && o.offset > 0 && o.offset <= size) {
        options.onProgress({ sent: 0, size, resumedFrom: o.offset, phase: 'hashing' });
        await readRange(file, 0, o.offset, (b) => void hasher.update(b), cancelled);
        // The state after our prefix is where the upload goes on from, if the server's prefix is the same.
        const state = hasher.save();
        if (hasher.digest('hex') === o.sha256) {
          from = o.offset;
          hasher.load(state);
        } else {
          hasher.init();
        }
      }
      conn.follow(id, { t: 'from', offset: from });
    }
    options.onProgress({ sent: from, size, resumedFrom: from, phase: 'sending' });
    await readRange(
      file,
      from,
      size,
      async (bytes, at) => {
        hasher.update(bytes);
        conn.data(id, bytes);
        options.onProgress({ sent: at + bytes.length, size, resumedFrom: from, phase: 'sending' });
        await conn.drained();
      },
      cancelled,
    );
    if (failed) throw failed;
    conn.follow(id, { t: 'end', sha256: hasher.digest('hex') });
    options.onProgress({ sent: size, size, resumedFrom: from, phase: 'verifying' });
    const result = (await done) as UploadResult;
    return result;
  } catch (err) {
    if (!failed) stop();
    throw failed ?? err;
  }
}
