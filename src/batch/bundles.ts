import pMap from 'p-map';
import type { BundleHooks, FerryClient } from '../client/mod.ts';
import { FerryError } from '../core/errors.ts';
import type { FileTask } from './plan.ts';

/** Files up to this size travel in bundles (the DATA limit of both reference sides); larger ones on their own. */
export const BUNDLE_FILE_MAX = 1024 * 1024;
/**
 * A bundle holds at most this many files and bytes: enough that the per-bundle round trip is noise, few enough
 * that a connection lost in the middle leaves little to sort out (those files go again one by one).
 */
const BUNDLE_FILES = 2000;
const BUNDLE_BYTES = 64 * 1024 * 1024;
/** Bundles in flight at once (one sends while the other's last files are stored). */
const LANES = 2;

/** What running bundles needs of the batch run (runner.ts). */
export interface BundleRun {
  client(): Promise<FerryClient>;
  /** A file moved and verified by its bundle. */
  done(t: FileTask, file: { size: number; sha256: string }, ms: number): void;
  /** The bundle did not move this file (`err` says why): try it on its own, skip it, or report it. */
  failed(t: FileTask, err: unknown): Promise<void>;
  /**
   * The file goes on its own. `unsure`: its bundle went down before it said anything about it, so it may be
   * stored already (an upload then finds it there, with the same bytes).
   */
  alone(t: FileTask, unsure?: boolean): Promise<void>;
  /** Progress of a bundle: returns a function that takes the bytes moved and not yet done, and ends with `null`. */
  progress(label: string, to: string, bytes: number): (done: number | null) => void;
}

/** Whether a file goes in a bundle: small enough, and not checked against an expected digest. */
export function bundleable(t: FileTask): boolean {
  return t.size <= BUNDLE_FILE_MAX && t.expectSha256 === null;
}

/** The files in bundles of one direction each, in order, within BUNDLE_FILES and BUNDLE_BYTES. */
export function groupBundles(tasks: readonly FileTask[]): FileTask[][] {
  const groups: FileTask[][] = [];
  for (const kind of ['put', 'get'] as const) {
    let group: FileTask[] = [];
    let bytes = 0;
    for (const t of tasks) {
      if (t.kind !== kind) continue;
      if (group.length > 0 && (group.length >= BUNDLE_FILES || bytes + t.size > BUNDLE_BYTES)) {
        groups.push(group);
        group = [];
        bytes = 0;
      }
      group.push(t);
      bytes += t.size;
    }
    if (group.length > 0) groups.push(group);
  }
  return groups;
}

/** Runs the bundles, LANES at a time; every file ends in exactly one of `done`, `failed` or `alone`. */
export async function runBundles(groups: readonly FileTask[][], run: BundleRun): Promise<void> {
  await pMap(groups, (group) => runBundle(group, run), { concurrency: LANES });
}

async function runBundle(group: readonly FileTask[], run: BundleRun): Promise<void> {
  const started = Date.now();
  const bytes = group.reduce((n, t) => n + t.size, 0);
  const first = group[0] as FileTask;
  const progress = run.progress(`${group.length} files`, first.kind === 'put' ? common(group.map((t) => t.dst)) : '', bytes);
  const settled = new Uint8Array(group.length);
  const failures: Array<[FileTask, unknown]> = [];
  let moved = 0;
  const hooks: BundleHooks = {
    onBytes: (n) => progress((moved += n)),
    onDone: (i, file) => {
      settled[i] = 1;
      progress((moved -= file.size)); // counted as done from now on
      run.done(group[i] as FileTask, file, Date.now() - started);
    },
    onFailed: (i, err) => {
      settled[i] = 1;
      failures.push([group[i] as FileTask, err]);
    },
  };
  let refused: unknown = null;
  try {
    const client = await run.client();
    if (first.kind === 'put') {
      await client.putMany(group.map((t) => ({ local: t.src, remote: t.dst, overwrite: t.replace, parents: true })), hooks);
    } else {
      await client.getMany(group.map((t) => ({ remote: t.src, local: t.dst, overwrite: t.replace })), hooks);
    }
  } catch (err) {
    // The bundle as a whole was refused for good (the account may not upload, ...): so is each of its files. Any
    // other failure (the connection): what it did not report on goes on its own below, with its retries.
    if (err instanceof FerryError && !err.retryable && !err.fatal) refused = err;
  } finally {
    progress(null);
  }
  for (const [t, err] of failures) await run.failed(t, err);
  const unsettled = group.filter((_, i) => settled[i] === 0);
  if (refused !== null) {
    for (const t of unsettled) await run.failed(t, refused);
    return;
  }
  await pMap(unsettled, (t) => run.alone(t, true), { concurrency: 8 });
}

/** The longest common folder of remote paths (for the progress line). */
function common(paths: readonly string[]): string {
  let prefix = paths[0] ?? '';
  for (const p of paths) while (!p.startsWith(prefix)) prefix = prefix.slice(0, prefix.lastIndexOf('/', prefix.length - 2) + 1);
  return prefix;
}
