/** The messages between the event loop (lanes.ts) and the commit worker (worker.ts). */

export interface SmallCommit {
  /** Absolute path of the partial file to create (it must not exist as a link; it is replaced if a file). */
  partial: string;
  /** The whole content. */
  chunks: Uint8Array[];
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
  /** `write`: the partial could not be written (it has been removed); `place`: it is written, not placed. */
  | { ok: false; stage: 'write' | 'place'; refused?: 'leaves' | 'is_a_directory' | 'exists'; code?: string; message?: string; mtimeMs?: number };

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
export type WorkerMessage = { replies: Reply[] } | { ready: true };
