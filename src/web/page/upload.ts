/**
 * One file from the browser to the server, as the CLI sends it (docs/protocol.md, put): the bytes in DATA frames,
 * then the SHA-256 of the whole file — hashed in a Web Worker (hasher.ts) as the bytes go: by the browser's native
 * SHA-256 of the whole file where it fits in memory, else by a streaming SHA-256 as the file is read — so the server's
 * verified commit applies unchanged and nothing becomes visible unless it matches. Files of
 * 1 MiB or more ask to resume: after a dropped connection or a reload, the same file chosen again continues from
 * what the server holds, once its SHA-256 of that part equals ours (hashed from the file, not trusted).
 */
import { FerryPageError, type Connection, type Message } from './conn.ts';
import { fitsWhole } from './budget.ts';
import { UploadHasher } from './hasher.ts';

/** The part of a file read and sent at a time (a DATA frame; at most the server's maxData). */
const CHUNK = 1024 * 1024;
const RESUME_FROM = 1024 * 1024;
/** What the page reads at a time to hash a file whose bytes go by a link (fewer, larger reads cost less). */
const HASH_CHUNK = 8 * 1024 * 1024;
/** Files from this size on send their bytes by an upload link (when the server offers `link`). */
const LINK_FROM = 256 * 1024;
/** The bytes of the files being hashed whole, by every upload of the page together (budget.ts). */
let hashingWhole = 0;

/**
 * PUTs `body` to an upload link with XMLHttpRequest (it reports upload progress, which fetch does not), reporting the
 * bytes sent; rejects when the server refuses, the connection drops, the signal aborts, or the upload failed on the
 * session (`failed()`).
 */
function sendByLink(url: string, body: Blob, progress: (loaded: number) => void, signal: AbortSignal | undefined, failed: () => FerryPageError | null): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    // Cancelled by the user: the page's `cancel` goes on the session first (uploadFile), and the request is stopped once
    // the server has answered it (or after 3 s), so the server sees the cancel before the request's connection closing
    // — which alone would look like a dropped link and keep the part for a resume.
    let abortedAt = 0;
    const timer = setInterval(() => {
      if (signal?.aborted && abortedAt === 0) abortedAt = Date.now();
      if (failed() || (abortedAt > 0 && Date.now() - abortedAt > 3000)) xhr.abort();
    }, 100);
    const finish = (err: FerryPageError | null) => {
      clearInterval(timer);
      if (err) reject(err);
      else resolve();
    };
    xhr.upload.onprogress = (e) => progress(e.loaded);
    // A refusal (409: the upload ended on the session meanwhile) can come before the session's own answer, which says
    // why: the caller waits for that (upload).
    xhr.onload = () => (xhr.status === 204 ? finish(null) : finish(failed() ?? new FerryPageError('link_refused', `The server refused the bytes (HTTP ${xhr.status}): ${xhr.responseText.trim()}`)));
    xhr.onerror = () => finish(failed() ?? new FerryPageError('connection_lost', 'The upload connection was lost'));
    xhr.onabort = () => finish(failed() ?? new FerryPageError('cancelled', 'Cancelled'));
    xhr.open('PUT', url);
    xhr.send(body);
  });
}

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

/** What takes each chunk a read gives: its bytes (its own buffer) and where in the file they are. */
type EachChunk = (bytes: Uint8Array<ArrayBuffer>, at: number) => Promise<void> | void;

/**
 * Reads `[start, end)` of `file` in chunks of `chunk` bytes (the last one shorter), feeding each to `each` in a buffer
 * of its own (which `each` may hand over). The file's stream is read with a BYOB reader straight into those buffers,
 * which costs the browser about half the CPU of reading slice after slice (bench:web); the stream reads ahead itself.
 * Where a browser has no BYOB reader, slices are read, the next one while `each` works.
 */
async function readRange(file: Blob, start: number, end: number, each: EachChunk, cancelled: () => boolean, chunk = CHUNK): Promise<void> {
  if (start >= end) return;
  let reader: ReadableStreamBYOBReader;
  try {
    reader = file.slice(start, end).stream().getReader({ mode: 'byob' });
  } catch {
    return readSlices(file, start, end, each, cancelled, chunk);
  }
  try {
    for (let at = start; at < end; ) {
      if (cancelled()) throw new FerryPageError('cancelled', 'Cancelled');
      const want = Math.min(chunk, end - at);
      let buffer = new ArrayBuffer(want);
      let filled = 0;
      while (filled < want) {
        const { done, value } = await reader.read(new Uint8Array(buffer, filled, want - filled));
        // The buffer handed to read() is moved into `value`, done or not: only `value.buffer` is usable after.
        if (value === undefined) throw new FerryPageError('internal', 'The file could not be read');
        buffer = value.buffer;
        if (done) break;
        filled += value.byteLength;
      }
      if (filled === 0) throw new FerryPageError('internal', `The file ended at ${at} bytes of ${end}: was it changed while being sent?`);
      await each(new Uint8Array(filled === want ? buffer : buffer.slice(0, filled)), at);
      at += filled;
    }
  } finally {
    void reader.cancel().catch(() => {});
  }
}

/** readRange without a BYOB reader: one slice at a time, the next read while `each` works. */
async function readSlices(file: Blob, start: number, end: number, each: EachChunk, cancelled: () => boolean, chunk: number): Promise<void> {
  const read = (at: number) => file.slice(at, Math.min(end, at + chunk)).arrayBuffer();
  let next = start < end ? read(start) : null;
  for (let at = start; at < end && next; at += chunk) {
    if (cancelled()) throw new FerryPageError('cancelled', 'Cancelled');
    const bytes = new Uint8Array(await next);
    next = at + chunk < end ? read(at + chunk) : null;
    await each(bytes, at);
  }
}

/**
 * Uploads `file` to `path`. `signal` (an AbortSignal) cancels it: the server drops what it has of it. A dropped
 * connection (the session's, or only the upload link's) leaves the server's part for a resume: the same file
 * uploaded again to the same path goes on from there.
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
  const hasher = new UploadHasher();
  // Progress stops once the upload has ended: the link's request may report for a moment more (it is stopped after
  // the server's answer), and must not draw over the ending the page shows.
  let over = false;
  const report = (p: UploadProgress) => {
    if (!over) options.onProgress(p);
  };
  try {
    return await upload(conn, file, path, { ...options, onProgress: report }, hasher);
  } finally {
    over = true;
    hasher.close();
  }
}

async function upload(
  conn: Connection,
  file: File,
  path: string,
  options: { overwrite: boolean; onProgress: (p: UploadProgress) => void; signal?: AbortSignal },
  hasher: UploadHasher,
): Promise<UploadResult> {
  const size = file.size;
  const chunk = Math.max(64 * 1024, Math.min(CHUNK, conn.welcome.maxData));
  const resume = size >= RESUME_FROM && conn.welcome.features.includes('resume');
  // The bytes of a larger file go by an HTTPS PUT that the browser streams itself (a WebSocket is several times
  // slower in browsers); they enter the same session, and the same SHA-256 check ends the upload.
  const byLink = size >= LINK_FROM && conn.welcome.features.includes('link');
  // Hashed whole by the browser's native SHA-256 (read into memory once the bytes go by link) where it fits; else
  // streamed through hash-wasm as the file is read.
  const whole = byLink && globalThis.crypto?.subtle !== undefined && fitsWhole(size, (navigator as Navigator & { deviceMemory?: number }).deviceMemory, hashingWhole);
  let sha256: string | null = null;
  const id = conn.newId();
  let offered: { offset: number; sha256: string } | null = null;
  let offerArrived: () => void = () => {};
  const offer = new Promise<void>((r) => (offerArrived = r));
  let linkArrived: (url: string | null) => void = () => {};
  const link = new Promise<string | null>((r) => (linkArrived = r));
  let failed: FerryPageError | null = null;
  const done = conn
    .requestOn(
      id,
      { t: 'put', path, size, mtime: Math.floor(file.lastModified), overwrite: options.overwrite, parents: true, ...(resume ? { resume: true } : {}), ...(byLink ? { link: true } : {}) },
      (m: Message) => {
        if (m.t === 'resume') {
          offered = { offset: Number(m.offset), sha256: String(m.sha256) };
          offerArrived();
        } else if (m.t === 'link') {
          linkArrived(String(m.url));
        }
      },
    )
    .catch((err: FerryPageError) => {
      failed = err;
      offerArrived();
      linkArrived(null);
      throw err;
    });
  done.catch(() => {});
  const cancelled = () => failed !== null || options.signal?.aborted === true;
  let stopped = false;
  const stop = () => {
    if (!conn.closed && !stopped) conn.follow(id, { t: 'cancel' });
    stopped = true;
  };
  // The user's cancel reaches the server at once (the bytes by link stop after its answer: sendByLink).
  options.signal?.addEventListener('abort', () => failed === null && stop(), { once: true });
  let from = 0;
  if (whole) hashingWhole += size; // given back when this upload ends (finally, below)
  try {
    if (resume) {
      await offer;
      if (failed) throw failed;
      const o = offered as { offset: number; sha256: string } | null;
      if (o && o.offset > 0 && o.offset <= size) {
        options.onProgress({ sent: 0, size, resumedFrom: o.offset, phase: 'hashing' });
        if (whole) {
          if ((await hasher.whole(file.slice(0, o.offset))) === o.sha256) from = o.offset;
        } else {
          await readRange(file, 0, o.offset, (b) => hasher.update(b.buffer), cancelled, HASH_CHUNK);
          // The state after our prefix is where the upload goes on from, if the server's prefix is the same.
          if ((await hasher.digest()) === o.sha256) from = o.offset;
          else hasher.reset();
        }
      }
      conn.follow(id, { t: 'from', offset: from });
    }
    options.onProgress({ sent: from, size, resumedFrom: from, phase: 'sending' });
    if (byLink) {
      const url = await link;
      if (failed || url === null) throw failed ?? new FerryPageError('internal', 'No upload address');
      // The browser sends the bytes; meanwhile the page hashes them (the same bytes: the same slice of the file). The
      // File itself, not a slice of it, when all of it goes: Chromium then lets its network process read the file,
      // where a slice is read by the browser's main process and piped over (0.7 s of CPU more per GiB on a quiet host,
      // 6 s on a loaded one: docs/benchmarks.md).
      // The SHA-256 of a file that fits in memory is the browser's own, of the whole file at once (fitsWhole).
      const [, digest] = await Promise.all([
        sendByLink(url, from === 0 ? file : file.slice(from), (loaded) => options.onProgress({ sent: from + loaded, size, resumedFrom: from, phase: 'sending' }), options.signal, () => failed),
        whole ? hasher.whole(file) : readRange(file, from, size, (b) => hasher.update(b.buffer), cancelled, HASH_CHUNK).then(() => null),
      ]);
      sha256 = digest;
    } else {
      await readRange(
        file,
        from,
        size,
        async (bytes, at) => {
          conn.data(id, bytes);
          const length = bytes.length;
          await hasher.update(bytes.buffer); // after the send: the buffer is handed over to the worker
          options.onProgress({ sent: at + length, size, resumedFrom: from, phase: 'sending' });
          await conn.drained();
        },
        cancelled,
        chunk,
      );
    }
    if (failed) throw failed;
    conn.follow(id, { t: 'end', sha256: sha256 ?? (await hasher.digest()) });
    options.onProgress({ sent: size, size, resumedFrom: from, phase: 'verifying' });
    const result = (await done) as UploadResult;
    return result;
  } catch (err) {
    const code = (err as FerryPageError).code;
    if (!failed && byLink && (code === 'connection_lost' || code === 'link_refused') && !conn.closed) {
      // Only the link's connection dropped: the server ends the upload itself and keeps its part for a resume (a
      // cancel would throw that away); or the link was refused because the upload ended on the session: either way
      // the session's answer says what happened, so it is awaited first.
      await Promise.race([done.catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
    }
    if (!failed) stop();
    // What the server said wins; else a user's cancel is a cancel, whatever the link's request saw meanwhile.
    throw failed ?? (options.signal?.aborted ? new FerryPageError('cancelled', 'Cancelled') : err);
  } finally {
    // (A digest this upload no longer waits for may finish in the worker a moment later: one at most per upload.)
    if (whole) hashingWhole -= size;
  }
}
