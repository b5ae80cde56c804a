import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../../core/errors.ts';
import { placeNoReplaceSync } from '../../fs/place.ts';
import type { UploadOptions } from '../storage.ts';
import { fail, missingDirectory, refusal } from './errors.ts';
import type { Home } from './home.ts';
import type { SmallCommits } from './lanes.ts';

/** What a commit of a small upload comes to: the committed file's mtime, or the error and whether the partial was kept. */
export type SmallOutcome = { mtimeMs: number } | { error: FerryError; partialKept: boolean };

/**
 * Moves a verified partial into place, inside the opened (and checked) target directory, without replacing
 * anything unless `overwrite`; then makes the directory entry durable. Directories are made first with
 * `parents`.
 */
export async function placeUpload(home: Home, segments: readonly string[], shown: string, partial: string, options: UploadOptions): Promise<void> {
  const verb = 'upload';
  const parents = segments.slice(0, -1);
  const dir = options.parents === true ? await home.mkdirs(parents, verb, shown, false) : await home.openPath(parents, verb, shown);
  try {
    const target = join(dir.at, segments.at(-1) ?? '');
    const overwrite = options.overwrite === true;
    await home.checkTarget(target, overwrite, verb, shown);
    try {
      if (overwrite) await rename(partial, target);
      else placeNoReplaceSync(partial, target);
    } catch (err) {
      throw fail(err, verb, shown);
    }
    await dir.sync();
  } finally {
    await dir.close().catch(() => {});
  }
}

export function digestMismatch(shown: string): FerryError {
  return new FerryError('digest_mismatch', `Upload of ${shown} arrived damaged: its SHA-256 differs from the declared one`);
}

/**
 * Writes and places a small upload in one hop to the commit worker (the same checks as `placeUpload`, in
 * pinned mode). `bytes`: the whole content, the caller's alone: it is detached (unusable) once this is called.
 * `deferred`: the upload made no check as it started (`deferChecks`), so what the start would have refused is
 * refused now, and nothing is kept of it.
 */
export async function commitSmall(
  home: Home,
  commits: SmallCommits,
  job: { segments: readonly string[]; shown: string; partial: string; options: UploadOptions; bytes: Buffer; deferred: boolean; sha256?: string },
): Promise<SmallOutcome> {
  const { segments, shown, partial, options, deferred } = job;
  const root = await home.real();
  let r;
  try {
    // The upload's own buffer (allocUnsafeSlow) is handed over whole, without a copy.
    const { bytes } = job;
    const transfer = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? [bytes.buffer as ArrayBuffer] : [];
    const commit = {
      partial,
      chunks: [bytes],
      mtime: options.mtime ?? null,
      dir: join(root, ...segments.slice(0, -1)),
      home: root,
      name: segments.at(-1) ?? '',
      overwrite: options.overwrite === true,
      ...(job.sha256 !== undefined ? { sha256: job.sha256 } : {}),
    };
    r = await commits.run(commit, transfer);
  } catch (err) {
    return { error: new FerryError('internal', `Cannot upload ${shown}: ${(err as Error).message}`), partialKept: false };
  }
  if (r.ok) return { mtimeMs: r.mtimeMs };
  if (r.stage === 'verify') return { error: digestMismatch(shown), partialKept: false };
  const kept = r.stage === 'place';
  const missingDir = kept && (r.code === 'ENOENT' || r.code === 'ENOTDIR') && r.mtimeMs !== undefined;
  if (deferred && missingDir) {
    // The checks an upload makes as it starts, made now: which directory is missing, and may it be made?
    const parents = segments.slice(0, -1);
    try {
      const { missing } = await home.existingAncestor(parents, 'upload', shown);
      if (missing.length > 0 && options.parents !== true) return { error: missingDirectory(parents, missing, shown), partialKept: false };
      if (missing.length > 0 && options.mayCreateParents === false) {
        return { error: new FerryError('permission_denied', 'Your account may not mkdir'), partialKept: false };
      }
    } catch (err) {
      return { error: fail(err, 'upload', shown), partialKept: false };
    }
    try {
      await placeUpload(home, segments, shown, partial, options);
      return { mtimeMs: r.mtimeMs as number };
    } catch (err) {
      // What the start would have refused (a file in the way of a directory...): refused, nothing kept.
      return { error: fail(err, 'upload', shown), partialKept: false };
    }
  }
  if (missingDir && options.parents === true) {
    // Its directory went away since the upload started: the usual way creates the directories again.
    try {
      await placeUpload(home, segments, shown, partial, options);
      return { mtimeMs: r.mtimeMs as number };
    } catch (err) {
      return { error: fail(err, 'upload', shown), partialKept: true };
    }
  }
  const error = r.refused !== undefined ? refusal(r.refused, 'upload', shown) : fail(Object.assign(new Error(r.message ?? ''), { code: r.code }), 'upload', shown);
  // Deferred checks that refuse: the upload is refused as it would have been at its start, nothing is kept.
  return { error, partialKept: kept && !(deferred && r.refused !== undefined) };
}
