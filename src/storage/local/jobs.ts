/** The messages between the event loop (lanes.ts) and the commit worker (worker.ts). */

export interface SmallCommit {
  /** Absolute path of the partial file to create (it must not exist as a link; it is replaced if a file). */
  partial: string;
  /** The whole content. */
  chunks: Uint8Array[];
  /** When set, the SHA-256 (hex) the content must have: checked before anything is written (`stage: 'verify'`). */
  sha256?: string;
  /** Modification time to set (ms since epoch), or null to keep the time of writing. */
  mtime: number | null;
  /** Absolute path of the target's directory, as the home joined with the virtual parents (links followed). */
  dir: string;
  /** The real path of the home: the opened directory must be inside it. */
  home: string;
  /** The target's name in `dir`. */
  name: string;
  overwrite: boolean;
}

export type SmallCommitResult =
  | { ok: true; mtimeMs: number }
  /** `verify`: the content differs from `sha256` (nothing written); `write`: the partial could not be written (it has been removed); `place`: it is written, not placed. */
  | { ok: false; stage: 'verify' | 'write' | 'place'; refused?: 'leaves' | 'is_a_directory' | 'exists'; code?: string; message?: string; mtimeMs?: number };

export interface SmallRead {
  /** Absolute path: the home joined with the virtual path (links followed, then checked). */
  path: string;
  /** The real path of the home. */
  home: string;
  /** Files larger than this are not read: the answer is `large`. */
  max: number;
}

export type SmallReadResult =
  | { ok: true; size: number; mtimeMs: number; bytes: Uint8Array; refused?: undefined; large?: undefined }
  | { ok: true; large: true; refused?: undefined }
  | { ok: true; refused: 'leaves' | 'is_a_directory' | 'not_a_file'; large?: undefined }
  | { ok: false; code?: string; message?: string };

/** One job as it travels to the worker: a commit, or a read (`op: 'read'`), with the id its reply carries. */
export type Job = ({ op?: undefined } & SmallCommit) | ({ op: 'read' } & SmallRead);
export type JobMessage = { jobs: Array<Job & { id: number }> };
export type Reply = (SmallCommitResult | SmallReadResult) & { id: number };
export type WorkerMessage = { replies: Reply[] } | { ready: true } | BundleReply;

/**
 * A bundle (protocol/bundle.ts) stored by the worker: the event loop hands it the stream's bytes as they come
 * (`BundleMessage`), the worker decodes the records and stores each as a small commit, and answers each batch of
 * bytes with what became of the records they completed (`BundleReply`).
 */
export interface BundleSpec {
  /** The real path of the home. */
  home: string;
  /** The folder of the partials; the bundle's are `<token>-<n>.part`. */
  partials: string;
  token: string;
  mayOverwrite: boolean;
  mayCreateParents: boolean;
  /** Files larger than this are refused (`too_large`): the server's maximum upload size. */
  maxFile: number;
  maxHeader: number;
  maxBody: number;
}

/** A download bundle read by the worker: the `want` records come in, the `file` records go out, packed in pieces. */
export interface BundleReadSpec {
  /** The real path of the home. */
  home: string;
  /** Files larger than this are refused (`too_large`): the most a record may carry to the client. */
  maxFile: number;
  maxHeader: number;
  /** Each piece holds HEADER_SIZE free bytes (for the frame header), then at most this many bytes of records. */
  frame: number;
}

/** What the event loop says about a bundle: it opens (to store, or to read), bytes of it (`seq` counts them from 1), its end, or its abort. */
export type BundleMessageBody =
  | { open: BundleSpec }
  | { read: BundleReadSpec }
  | { seq: number; chunks: Uint8Array[] }
  | { seq: number; end: true }
  | { seq: number; abort: true }
  /** Pieces of a download bundle the transport has written, handed back to be filled again (no answer). */
  | { give: ArrayBuffer[] }
  /** A running SHA-256 (worker-hash.ts), from `state` when given: each `chunks` message is answered with the state after it. */
  | { hash: { state?: Uint8Array } };
export type BundleMessage = { bundle: number } & BundleMessageBody;

/** What became of one record of a bundle. */
export type BundleOutcome = { index: number; path: string; size: number; overwrite: boolean } & (
  | { ok: true; mtimeMs: number; sha256: string }
  | { ok: false; refused?: 'leaves' | 'is_a_directory' | 'exists' | 'too_large' | 'mkdir' | 'digest' | 'invalid_path'; code?: string; message?: string }
);

/** What became of one file a download bundle wanted. */
export type ReadOutcome = { index: number; path: string } & (
  | { ok: true; size: number; sha256: string }
  | { ok: false; refused?: 'leaves' | 'is_a_directory' | 'not_a_file' | 'too_large' | 'invalid_path'; code?: string; message?: string }
);

/**
 * The answer to the bundle message `seq`: its records' outcomes (a download bundle: `read`, and the `file`
 * records in `pieces`, each after HEADER_SIZE free bytes), or why the stream is broken (then nothing more is done).
 */
/**
 * The worker's answer to one message of a bundle. `more`: a download bundle stopped packing at its budget with
 * names still waiting; the event loop asks for them (an empty `chunks` message) once the client has caught up.
 */
export type BundleReply = { bundle: number; seq: number; outcomes: BundleOutcome[]; read?: ReadOutcome[]; pieces?: Uint8Array[]; more?: boolean; state?: Uint8Array; error?: { code: string; message: string } };
