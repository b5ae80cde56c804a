import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { statSync, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, sep } from 'node:path';
import pMap from 'p-map';
import picomatch from 'picomatch';
import { glob } from 'tinyglobby';
import { PARTIAL_SUFFIX } from '../client/download.ts';
import { FerryError } from '../core/errors.ts';
import type { Entry } from '../core/types.ts';
import { parseVirtualPath } from '../core/paths.ts';
import type { FileRecord } from './journal.ts';
import type { GetOp, Op, PutOp } from './manifest.ts';
import { isGlob, normaliseRemote } from './remote-paths.ts';

/** Why a file or operation is not done. */
export type SkipReason = 'journal' | 'exists' | 'unchanged' | 'identical' | 'missing';

export const SKIP_TEXT: Record<SkipReason, string> = {
  journal: 'done in an earlier run and unchanged since (journal)',
  exists: 'the destination exists (overwrite: skip)',
  unchanged: 'the destination already has the same bytes (if_changed)',
  identical: 'the destination already exists with the same bytes',
  missing: 'nothing there (missing_ok)',
};

/** A failure known before anything is sent (the destination exists and overwrite is fail, say). */
export interface PlannedError {
  code: string;
  message: string;
}

/** One file to transfer, or to skip, and how. */
export interface FileTask {
  op: number;
  kind: 'put' | 'get';
  /** Local absolute path (put) or remote path (get). */
  src: string;
  /** Remote path (put) or local absolute path (get). */
  dst: string;
  size: number;
  /** Source modification time, ms since the epoch. */
  mtime: number;
  /** Ask to replace an existing destination. */
  replace: boolean;
  /** What an `exists` answer means for this file: skip it (overwrite: skip) or fail. */
  onExists: 'skip' | 'fail';
  expectSha256: string | null;
  skip: SkipReason | null;
  error: PlannedError | null;
}

/** Consecutive put/get operations that run together; any other operation is a stage of its own. */
export interface Stage {
  ops: Op[];
}

export interface StagePlan {
  files: FileTask[];
  /**
   * Remote folders to create (with parents) before the uploads: the deepest missing ones, of the folders files go
   * into and of the folders an uploaded folder holds (empty ones too, as `scp -r` and `rsync -a` make them).
   */
  remoteDirs: string[];
  /** Remote folders the uploads of this stage need (every local folder under an uploaded folder); planning fills `remoteDirs` from them. */
  wantedDirs: string[];
  /** Local folders to create before the downloads (those files go into, and the folders of a downloaded folder). */
  localDirs: string[];
  /** Local folders the downloads of this stage need (every remote folder under a downloaded folder). */
  wantedLocalDirs: string[];
  /** Files left out by `exclude`, per op index. */
  excluded: Map<number, number>;
  /** Operations that failed as a whole while planning (a source that does not exist). */
  opErrors: Array<{ op: number; kind: 'put' | 'get'; source: string; code: string; message: string }>;
}

/** What the planner needs from the server; each call is one (pipelined) request. */
export interface RemoteView {
  list(path: string): Promise<Entry[]>;
  /** Everything below a folder in one request, each entry named by its relative path (where the server offers it). */
  listTree?(path: string): Promise<Entry[]>;
  /** Null when nothing is there. */
  stat(path: string): Promise<Entry | null>;
  statHash(path: string): Promise<{ entry: Entry; sha256: string | null }>;
}

export interface PlanContext {
  remote: RemoteView;
  journal: { file(kind: 'put' | 'get', src: string, dst: string): FileRecord | undefined } | null;
}

/** SHA-256 (hex) of a local file, streamed. */
export function hashLocalFile(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolvePromise(hash.digest('hex')));
  });
}

/** Joins remote path parts with `/`, leaving out empty ones. */
export function remoteJoin(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}

function remoteDirname(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

function remoteBasename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** True when one path is the other or inside it (`''` is the home and contains everything). */
export function overlaps(a: string, b: string, separator = '/'): boolean {
  if (a === '' || b === '' || a === b) return true;
  return a.startsWith(b.endsWith(separator) ? b : b + separator) || b.startsWith(a.endsWith(separator) ? a : a + separator);
}

/** The part of a path or pattern that is not a glob (`reports` for `reports/*.csv`). */
function globBase(pattern: string): string {
  return isGlob(pattern) ? picomatch.scan(pattern).base : pattern;
}

/**
 * Groups operations into stages run one after the other. Consecutive transfers share a stage (their
 * files go in parallel) unless one could read what another writes: a get under a put's destination,
 * a put of something a get writes to. mkdir, rename and delete are each a stage, so they see the
 * effects of everything before them.
 */
export function stagesOf(ops: readonly Op[]): Stage[] {
  const stages: Stage[] = [];
  let current: Array<PutOp | GetOp> = [];
  const conflicts = (op: PutOp | GetOp) =>
    current.some((other) => {
      if (other.kind === op.kind) return false;
      const put = (op.kind === 'put' ? op : other) as PutOp;
      const get = (op.kind === 'get' ? op : other) as GetOp;
      const remote = get.sources.some((s) => overlaps(normaliseRemote(globBase(s)), put.to));
      const local = put.sources.some((s) => overlaps(globBase(s), get.to, sep));
      return remote || local;
    });
  for (const op of ops) {
    if (op.kind === 'put' || op.kind === 'get') {
      if (current.length > 0 && conflicts(op)) {
        stages.push({ ops: current });
        current = [];
      }
      current.push(op);
    } else {
      if (current.length > 0) stages.push({ ops: current });
      current = [];
      stages.push({ ops: [op] });
    }
  }
  if (current.length > 0) stages.push({ ops: current });
  return stages;
}

/** Matches exclude patterns against a relative path and each folder above it; names without `/` match at any depth. */
export function excluder(patterns: readonly string[]): (rel: string) => boolean {
  if (patterns.length === 0) return () => false;
  const match = picomatch([...patterns], { dot: true, basename: true });
  return (rel) => {
    if (match(rel)) return true;
    for (let i = rel.indexOf('/'); i > 0; i = rel.indexOf('/', i + 1)) if (match(rel.slice(0, i))) return true;
    return false;
  };
}

/** A name from a server listing that is safe to use as one local path segment, or null. */
export function safeName(name: string): string | null {
  if (name === '' || name === '.' || name === '..' || /[/\\\u0000]/.test(name)) return null;
  try {
    const segments = parseVirtualPath(name);
    return segments.length === 1 && segments[0] === name ? name : null;
  } catch {
    return null;
  }
}

interface Found {
  path: string;
  /** Path relative to what the destination is built from, `/`-separated. */
  rel: string;
  size: number;
  mtime: number;
}

const toSlash = (p: string) => (sep === '/' ? p : p.split(sep).join('/'));

/** Files under a local folder (recursive, dot files included), and the folders under it (relative, `/`-separated). */
async function walkLocal(dir: string): Promise<{ files: Array<{ path: string; rel: string }>; dirs: string[] }> {
  const rels = await glob('**', { cwd: dir, onlyFiles: false, dot: true, followSymbolicLinks: true, expandDirectories: false });
  const files: Array<{ path: string; rel: string }> = [];
  const dirs: string[] = [];
  for (const rel of rels.sort()) {
    if (rel.endsWith('/')) dirs.push(toSlash(rel.slice(0, -1)));
    else files.push({ path: join(dir, rel), rel });
  }
  return { files, dirs };
}

/**
 * The local files' metadata, read synchronously: from the cache a stat takes microseconds where one through the
 * thread pool costs tens, and the planner stats every file. A turn of the event loop every STAT_TURN files.
 */
async function statLocal(items: Array<{ path: string; rel: string }>): Promise<Found[]> {
  const found: Found[] = [];
  for (let i = 0; i < items.length; i++) {
    if (i % STAT_TURN === STAT_TURN - 1) await new Promise((resolve) => setImmediate(resolve));
    const item = items[i] as { path: string; rel: string };
    const s = statOrNull(item.path);
    if (s?.isFile()) found.push({ path: item.path, rel: item.rel, size: s.size, mtime: Math.floor(s.mtimeMs) });
  }
  return found;
}

const STAT_TURN = 2000;

/** A local path's metadata, or null (missing, or unreadable). */
function statOrNull(path: string): Stats | null {
  try {
    return statSync(path, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}

/**
 * Files under a remote folder, recursively, listing sibling folders concurrently; the relative path of every folder
 * under it goes into `dirs` when given.
 */
async function walkRemote(remote: RemoteView, dir: string, rel = '', dirs?: string[]): Promise<Array<Found & { bad?: string }>> {
  if (remote.listTree !== undefined && rel === '') return walkRemoteTree(remote.listTree(dir), dir, dirs);
  const entries = await remote.list(dir);
  const nested = await Promise.all(
    entries.map(async (e) => {
      const name = safeName(e.name);
      if (name === null) return [{ path: remoteJoin(dir, e.name), rel: remoteJoin(rel, e.name), size: e.size, mtime: e.mtime, bad: e.name }];
      if (e.type === 'dir') {
        dirs?.push(remoteJoin(rel, name));
        return walkRemote(remote, remoteJoin(dir, name), remoteJoin(rel, name), dirs);
      }
      return [{ path: remoteJoin(dir, name), rel: remoteJoin(rel, name), size: e.size, mtime: e.mtime }];
    }),
  );
  return nested.flat();
}

/** walkRemote from one recursive listing: entries named by their paths below `dir`, folders first. */
async function walkRemoteTree(listing: Promise<Entry[]>, dir: string, dirs?: string[]): Promise<Array<Found & { bad?: string }>> {
  const found: Array<Found & { bad?: string }> = [];
  /** Folders left out (a name not safe here): nothing below them is taken either, as walkRemote would not descend. */
  const badDirs: string[] = [];
  for (const e of await listing) {
    if (badDirs.some((bad) => e.name.startsWith(`${bad}/`))) continue;
    const names = e.name.split('/').map(safeName);
    if (names.some((n) => n === null)) {
      found.push({ path: remoteJoin(dir, e.name), rel: e.name, size: e.size, mtime: e.mtime, bad: e.name });
      if (e.type === 'dir') badDirs.push(e.name);
      continue;
    }
    const rel = (names as string[]).reduce((a, n) => remoteJoin(a, n), '');
    if (e.type === 'dir') dirs?.push(rel);
    else found.push({ path: remoteJoin(dir, rel), rel, size: e.size, mtime: e.mtime });
  }
  return found;
}

function notFound(err: unknown): boolean {
  return err instanceof FerryError && (err.code === 'not_found' || err.code === 'not_a_directory');
}

/**
 * Plans one stage: expands every source (files, globs, folders) into files, looks at the destinations
 * (one listing per remote folder, one local stat per file), reads the journal, and decides for each
 * file whether to transfer it, skip it (and why) or fail it. Compares digests only when it must
 * (`if_changed`, `sha256`, an existing destination with `overwrite: fail`).
 */
export async function planStage(stage: Stage, ctx: PlanContext): Promise<StagePlan> {
  const plan: StagePlan = { files: [], remoteDirs: [], wantedDirs: [], localDirs: [], wantedLocalDirs: [], excluded: new Map(), opErrors: [] };
  const puts: Array<{ op: PutOp; found: Found; dst: string }> = [];
  const gets: Array<{ op: GetOp; found: Found & { bad?: string }; dst: string }> = [];

  await Promise.all(
    stage.ops.map(async (op) => {
      if (op.kind === 'put') {
        for (const x of await expandPut(op, plan)) puts.push({ op, ...x });
      } else if (op.kind === 'get') {
        for (const x of await expandGet(op, ctx.remote, plan)) gets.push({ op, ...x });
      }
    }),
  );

  const tasks: FileTask[] = [];
  if (puts.length > 0 || plan.wantedDirs.length > 0) tasks.push(...(await decidePuts(puts, ctx, plan)));
  if (gets.length > 0 || plan.wantedLocalDirs.length > 0) tasks.push(...(await decideGets(gets, ctx, plan)));

  // Two sources that land on the same destination: the first wins, the others fail.
  const byDst = new Map<string, FileTask>();
  for (const t of tasks) {
    const key = `${t.kind}\u0000${t.dst}`;
    const first = byDst.get(key);
    if (first && !t.error) t.error = { code: 'exists', message: `'${first.src}' goes to the same destination '${t.dst}'` };
    else byDst.set(key, t);
  }
  tasks.sort((a, b) => a.op - b.op || (a.src < b.src ? -1 : a.src > b.src ? 1 : 0));
  plan.files = tasks;
  return plan;
}

async function expandPut(op: PutOp, plan: StagePlan): Promise<Array<{ found: Found; dst: string }>> {
  const out: Array<{ found: Found; dst: string }> = [];
  const excluded = excluder(op.exclude);
  let excludedCount = 0;
  const add = (items: Found[], root: string) => {
    for (const f of items) {
      if (f.path.endsWith(PARTIAL_SUFFIX)) continue; // a download in progress, not a file
      if (excluded(f.rel)) {
        excludedCount++;
        continue;
      }
      out.push({ found: f, dst: remoteJoin(root, f.rel) });
    }
  };
  /** The folders an uploaded folder holds, made on the server too (empty ones included); excluded ones are not. */
  const addDirs = (rels: readonly string[], root: string) => {
    for (const rel of rels) if (rel === '' || !excluded(rel)) plan.wantedDirs.push(remoteJoin(root, rel));
  };
  for (const source of op.sources) {
    if (isGlob(source)) {
      const base = picomatch.scan(source).base;
      const matches = await glob(source, { absolute: true, onlyFiles: false, expandDirectories: false, dot: false });
      for (const m of matches.sort()) {
        const path = m.replace(/[\\/]+$/, '');
        const s = await stat(path).catch(() => null);
        if (s?.isDirectory()) {
          const inner = await walkLocal(path);
          const relDir = toSlash(relative(base, path));
          add(await statLocal(inner.files.map((i) => ({ path: i.path, rel: remoteJoin(relDir, i.rel) }))), op.to);
          addDirs([relDir, ...inner.dirs.map((d) => remoteJoin(relDir, d))], op.to);
        } else if (s?.isFile()) {
          add([{ path, rel: toSlash(relative(base, path)), size: s.size, mtime: Math.floor(s.mtimeMs) }], op.to);
        }
      }
      continue;
    }
    const s = await stat(source).catch((err: NodeJS.ErrnoException) => err);
    if (s instanceof Error) {
      const code = s.code === 'ENOENT' || s.code === 'ENOTDIR' ? 'not_found' : s.code === 'EACCES' ? 'permission_denied' : 'internal';
      plan.opErrors.push({ op: op.index, kind: 'put', source, code, message: `Cannot read '${source}': ${s.code === 'ENOENT' ? 'no such file or directory' : s.message}` });
      continue;
    }
    if (s.isDirectory()) {
      const root = op.into ? remoteJoin(op.to, basename(source)) : op.to;
      const inner = await walkLocal(source);
      add(await statLocal(inner.files), root);
      addDirs(['', ...inner.dirs], root);
    } else if (s.isFile()) {
      const f = { path: source, rel: basename(source), size: s.size, mtime: Math.floor(s.mtimeMs) };
      if (excluded(f.rel)) excludedCount++;
      else out.push({ found: f, dst: op.into ? remoteJoin(op.to, basename(source)) : op.to });
    } else {
      plan.opErrors.push({ op: op.index, kind: 'put', source, code: 'invalid_path', message: `Cannot upload '${source}': not a regular file or folder` });
    }
  }
  if (op.sha256 !== null && out.length > 1) {
    plan.opErrors.push({ op: op.index, kind: 'put', source: op.sources[0] ?? '', code: 'invalid_path', message: `sha256 asserts one file, but '${op.sources[0]}' is a folder of ${out.length} files` });
    return [];
  }
  if (excludedCount > 0) plan.excluded.set(op.index, (plan.excluded.get(op.index) ?? 0) + excludedCount);
  return out;
}

async function expandGet(op: GetOp, remote: RemoteView, plan: StagePlan): Promise<Array<{ found: Found & { bad?: string }; dst: string }>> {
  const out: Array<{ found: Found & { bad?: string }; dst: string }> = [];
  const excluded = excluder(op.exclude);
  let excludedCount = 0;
  const add = (items: Array<Found & { bad?: string }>, root: string) => {
    for (const f of items) {
      if (excluded(f.rel)) {
        excludedCount++;
        continue;
      }
      out.push({ found: f, dst: join(root, ...f.rel.split('/')) });
    }
  };
  for (const source of op.sources) {
    try {
      if (isGlob(source)) {
        const { base, glob: pattern } = picomatch.scan(source);
        const root = normaliseRemote(base);
        const match = picomatch(pattern);
        const all = await walkRemote(remote, root).catch((err) => {
          if (notFound(err)) return [];
          throw err;
        });
        // A folder that matches brings everything under it, as a matching file brings itself.
        add(
          all.filter((f) => {
            if (match(f.rel)) return true;
            for (let i = f.rel.indexOf('/'); i > 0; i = f.rel.indexOf('/', i + 1)) if (match(f.rel.slice(0, i))) return true;
            return false;
          }),
          op.to,
        );
        continue;
      }
      const entry = await remote.stat(source);
      if (!entry) {
        plan.opErrors.push({ op: op.index, kind: 'get', source, code: 'not_found', message: `No such file or directory on the server: '${source}'` });
        continue;
      }
      const name = remoteBasename(source);
      if (entry.type === 'dir') {
        const root = op.into && name ? join(op.to, name) : op.to;
        const subdirs: string[] = [];
        add(await walkRemote(remote, source, '', subdirs), root);
        // The folders come too, empty ones included (as scp -r and rsync -a make them).
        plan.wantedLocalDirs.push(root, ...subdirs.filter((d) => !excluded(d)).map((d) => join(root, ...d.split('/'))));
      } else {
        const f = { path: source, rel: name, size: entry.size, mtime: entry.mtime };
        if (excluded(f.rel)) excludedCount++;
        else out.push({ found: f, dst: op.into ? join(op.to, name) : op.to });
      }
    } catch (err) {
      if (!(err instanceof FerryError) || err.retryable) throw err;
      plan.opErrors.push({ op: op.index, kind: 'get', source, code: err.code, message: err.message });
    }
  }
  if (op.sha256 !== null && out.length > 1) {
    plan.opErrors.push({ op: op.index, kind: 'get', source: op.sources[0] ?? '', code: 'invalid_path', message: `sha256 asserts one file, but '${op.sources[0]}' is a folder of ${out.length} files` });
    return [];
  }
  if (excludedCount > 0) plan.excluded.set(op.index, (plan.excluded.get(op.index) ?? 0) + excludedCount);
  return out;
}

type DirState = Map<string, Entry> | 'missing' | 'unknown';

/**
 * The state of each remote folder: its entries, `missing`, or `unknown` (it could not be listed). Folders are
 * looked at from the top down, and one is listed only when what is known above it does not settle it: a folder
 * under a missing one, or whose name a listing above it lacks, is missing without a request (a new tree costs one
 * listing, not one per folder).
 */
async function listDirs(remote: RemoteView, dirs: Iterable<string>): Promise<Map<string, DirState>> {
  const out = new Map<string, DirState>();
  const depth = (d: string) => (d === '' ? 0 : d.split('/').length);
  const byDepth = new Map<number, string[]>();
  for (const dir of new Set(dirs)) byDepth.set(depth(dir), [...(byDepth.get(depth(dir)) ?? []), dir]);
  /** What the folders known above `dir` say of it: `missing`, or null when it must be listed to know. */
  const inferred = (dir: string): 'missing' | null => {
    for (let child = dir; child !== ''; child = remoteDirname(child)) {
      const above = out.get(remoteDirname(child));
      if (above === undefined) continue;
      if (above === 'missing') return 'missing';
      if (above instanceof Map) return above.get(remoteBasename(child))?.type === 'dir' ? null : 'missing';
      return null;
    }
    return null;
  };
  for (const level of [...byDepth.keys()].sort((a, b) => a - b)) {
    await Promise.all(
      (byDepth.get(level) ?? []).map(async (dir) => {
        if (inferred(dir) === 'missing') return void out.set(dir, 'missing');
        try {
          const entries = await remote.list(dir);
          out.set(dir, new Map(entries.map((e) => [e.name, e])));
        } catch (err) {
          if (notFound(err)) out.set(dir, 'missing');
          else if (err instanceof FerryError && !err.retryable) out.set(dir, 'unknown'); // no list permission: find out on upload
          else throw err;
        }
      }),
    );
  }
  return out;
}

/** The deepest of some remote folders (creating `a/b/c` with parents also makes `a` and `a/b`). */
export function deepest(dirs: Iterable<string>): string[] {
  const all = [...new Set(dirs)].filter((d) => d !== '').sort();
  const parents = new Set<string>();
  for (const d of all) for (let p = remoteDirname(d); p !== ''; p = remoteDirname(p)) parents.add(p);
  return all.filter((d) => !parents.has(d));
}

/** A file task as the op asks for it, before the skip and error decisions. */
function newTask(kind: 'put' | 'get', op: PutOp | GetOp, found: Found, dst: string): FileTask {
  return {
    op: op.index,
    kind,
    src: found.path,
    dst,
    size: found.size,
    mtime: found.mtime,
    replace: op.overwrite === 'replace',
    onExists: op.overwrite === 'skip' ? 'skip' : 'fail',
    expectSha256: op.sha256,
    skip: null,
    error: null,
  };
}

async function decidePuts(items: Array<{ op: PutOp; found: Found; dst: string }>, ctx: PlanContext, plan: StagePlan): Promise<FileTask[]> {
  const dirs = await listDirs(ctx.remote, [...items.map((i) => remoteDirname(i.dst)), ...plan.wantedDirs]);
  const localHashes = new Map<string, Promise<string>>();
  const localHash = (path: string) => {
    let h = localHashes.get(path);
    if (!h) localHashes.set(path, (h = hashLocalFile(path)));
    return h;
  };
  const tasks = await pMap(items, async ({ op, found, dst }): Promise<FileTask> => {
    const task = newTask('put', op, found, dst);
    try {
      parseVirtualPath(dst);
    } catch (err) {
      task.error = { code: 'invalid_path', message: `Cannot upload '${found.path}' as '${dst}': ${(err as Error).message}` };
      return task;
    }
    if (op.sha256 !== null) {
      const actual = await localHash(found.path);
      if (actual !== op.sha256) {
        task.error = { code: 'digest_mismatch', message: `'${found.path}' has sha256 ${actual}, not the expected ${op.sha256}; not uploaded` };
        return task;
      }
    }
    const state = dirs.get(remoteDirname(dst)) ?? 'unknown';
    const existing = state instanceof Map ? (state.get(remoteBasename(dst)) ?? null) : null;
    const known = state !== 'unknown';
    const rec = ctx.journal?.file('put', found.path, dst);
    if (
      rec &&
      rec.size === found.size &&
      (op.sha256 === null || rec.sha256 === op.sha256) &&
      (!known || (existing?.type === 'file' && existing.size === found.size)) &&
      (rec.mtime === found.mtime || (await localHash(found.path)) === rec.sha256)
    ) {
      task.skip = 'journal';
      return task;
    }
    if (existing?.type === 'dir') {
      task.error = { code: 'is_a_directory', message: `Cannot upload '${found.path}': '${dst}' is a folder on the server` };
      return task;
    }
    if (existing) {
      const sameBytes = async () => existing.size === found.size && (await ctx.remote.statHash(dst)).sha256 === (await localHash(found.path));
      if (op.ifChanged && (await sameBytes())) task.skip = 'unchanged';
      else if (op.overwrite === 'skip') task.skip = 'exists';
      else if (op.overwrite === 'fail') {
        if (await sameBytes()) task.skip = 'identical';
        else task.error = { code: 'exists', message: `'${dst}' exists on the server (overwrite: fail)` };
      }
    }
    return task;
  }, { concurrency: 32 });
  const missing = tasks.filter((t) => !t.skip && !t.error && dirs.get(remoteDirname(t.dst)) === 'missing').map((t) => remoteDirname(t.dst));
  for (const dir of plan.wantedDirs) if (dirs.get(dir) === 'missing') missing.push(dir);
  plan.remoteDirs = deepest(missing);
  return tasks;
}

async function decideGets(items: Array<{ op: GetOp; found: Found & { bad?: string }; dst: string }>, ctx: PlanContext, plan: StagePlan): Promise<FileTask[]> {
  const tasks = await pMap(items, async ({ op, found, dst }): Promise<FileTask> => {
    const task = newTask('get', op, found, dst);
    if (found.bad !== undefined) {
      task.error = { code: 'invalid_path', message: `The server listed a name that is not safe to use locally: ${JSON.stringify(found.bad)}` };
      return task;
    }
    const local = statOrNull(dst);
    const rec = ctx.journal?.file('get', found.path, dst);
    if (
      rec &&
      rec.size === found.size &&
      rec.mtime === found.mtime &&
      (op.sha256 === null || rec.sha256 === op.sha256) &&
      local?.isFile() &&
      local.size === found.size &&
      // The client set it from the server's; a float round trip through utimes can land a hair below.
      Math.abs(local.mtimeMs - found.mtime) < 1
    ) {
      task.skip = 'journal';
      return task;
    }
    if (op.sha256 !== null) {
      // Checked before anything moves; the download itself is checked against it again.
      const remoteHash = (await ctx.remote.statHash(found.path)).sha256;
      if (remoteHash !== op.sha256) {
        task.error = { code: 'digest_mismatch', message: `'${found.path}' has sha256 ${remoteHash}, not the expected ${op.sha256}; not downloaded` };
        return task;
      }
    }
    if (local?.isDirectory()) {
      task.error = { code: 'is_a_directory', message: `Cannot download '${found.path}': '${dst}' is a local folder` };
      return task;
    }
    if (local) {
      const sameBytes = async () => local.size === found.size && (await ctx.remote.statHash(found.path)).sha256 === (await hashLocalFile(dst));
      if (op.ifChanged && (await sameBytes())) task.skip = 'unchanged';
      else if (op.overwrite === 'skip') task.skip = 'exists';
      else if (op.overwrite === 'fail') {
        if (await sameBytes()) task.skip = 'identical';
        else task.error = { code: 'exists', message: `'${dst}' exists locally (overwrite: fail)` };
      }
    }
    return task;
  }, { concurrency: 32 });
  plan.localDirs = [...new Set([...tasks.filter((t) => !t.skip && !t.error).map((t) => dirname(t.dst)), ...plan.wantedLocalDirs])].sort();
  return tasks;
}

/** Resolves a local path against a folder, for display relative to the working folder when inside it. */
export function displayLocal(path: string, cwd = process.cwd()): string {
  const rel = relative(cwd, path);
  if (rel === '') return '.';
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}
