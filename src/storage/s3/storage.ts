import { createHash } from 'node:crypto';
import { CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, type GetObjectCommandOutput, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import pLimit, { type LimitFunction } from 'p-limit';
import { FerryError } from '../../core/errors.ts';
import { parseVirtualPath } from '../../core/paths.ts';
import type { Entry } from '../../core/types.ts';
import { checkMtime, checkPageSize, checkSize } from '../checks.ts';
import type { NameHold, NameLocks } from '../local/partials.ts';
import { show } from '../local/errors.ts';
import type { BundleSink, NameLeases, ReadHandle, Storage, Upload, UploadOptions, WholeOptions } from '../storage.ts';
import { isNotFound, s3Fail } from './client.ts';
import { fileEntry, fileOf, META_MTIME, META_SHA256, type S3Home } from './home.ts';
import { S3ReadHandle } from './read.ts';
import { S3Upload, storeWhole, type S3Target } from './upload.ts';

/**
 * One user's files in an object store (see S3Home for the key layout). The same operations, semantics and error
 * codes as the local driver, with these differences of an object store: a listing's times are the store's
 * (LastModified) where `stat` gives the time the client sent; renaming a folder that holds files is refused
 * (it would be one copy and one delete per object, never atomic); files under one part (8 MiB) do not resume.
 */
export class S3Storage implements Storage {
  readonly #home: S3Home;
  readonly #locks: NameLocks;
  readonly #limit: LimitFunction;

  readonly #leases: NameLeases | null;

  constructor(home: S3Home, locks: NameLocks, limit: LimitFunction = pLimit(64), leases: NameLeases | null = null) {
    this.#home = home;
    this.#locks = locks;
    this.#limit = limit;
    this.#leases = leases;
  }

  async stat(path: string): Promise<Entry | null> {
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    const name = segments.at(-1) ?? '';
    if (segments.length === 0) return { name: '', type: 'dir', size: 0, mtime: 0 };
    const file = await this.#home.file(segments, 'stat', shown);
    if (file !== null) return fileEntry(name, file);
    const first = await this.#home.firstUnder(segments, 1, 'stat', shown);
    if (first.length === 0) return null;
    return { name, type: 'dir', size: 0, mtime: first[0]?.LastModified?.getTime() ?? 0 };
  }

  /** The SHA-256 recorded with a file at upload, or null (not a file, or stored without it). */
  async recordedSha256(path: string): Promise<string | null> {
    const segments = parseVirtualPath(path);
    const file = await this.#home.file(segments, 'stat', show(segments));
    return file === null ? null : this.#home.sha256Of(segments, file);
  }

  async *list(path: string, pageSize = 1000): AsyncIterable<Entry[]> {
    checkPageSize(pageSize);
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    await this.#mustBeFolder(segments, 'list', shown);
    const prefix = this.#home.folder(segments);
    let token: string | undefined;
    do {
      const out = await this.#page(prefix, '/', Math.min(pageSize, 1000), token, shown);
      const page: Entry[] = [];
      for (const p of out.CommonPrefixes ?? []) {
        const name = nameOf(p.Prefix?.slice(prefix.length, -1));
        if (name !== null) page.push({ name, type: 'dir', size: 0, mtime: 0 });
      }
      for (const o of out.Contents ?? []) {
        if (o.Key === prefix) continue; // the folder's own marker
        const name = nameOf(o.Key?.slice(prefix.length));
        if (name !== null) page.push({ name, type: 'file', size: o.Size ?? 0, mtime: o.LastModified?.getTime() ?? 0 });
      }
      page.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      if (page.length > 0) yield page;
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async *listTree(path: string, pageSize = 1000): AsyncIterable<Entry[]> {
    checkPageSize(pageSize);
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    await this.#mustBeFolder(segments, 'list', shown);
    const prefix = this.#home.folder(segments);
    /** Folders already named (each comes before anything under it: keys are listed in order). */
    const seen = new Set<string>();
    let token: string | undefined;
    do {
      const out = await this.#page(prefix, undefined, Math.min(pageSize, 1000), token, shown);
      const page: Entry[] = [];
      for (const o of out.Contents ?? []) {
        const rel = o.Key?.slice(prefix.length) ?? '';
        const parts = rel.split('/');
        const file = parts.pop() as string;
        if (!parts.every((p) => nameOf(p) !== null)) continue;
        for (let i = 1; i <= parts.length; i++) {
          const dir = parts.slice(0, i).join('/');
          if (!seen.has(dir)) {
            seen.add(dir);
            page.push({ name: dir, type: 'dir', size: 0, mtime: 0 });
          }
        }
        if (file !== '' && nameOf(file) !== null) page.push({ name: rel, type: 'file', size: o.Size ?? 0, mtime: o.LastModified?.getTime() ?? 0 });
      }
      if (page.length > 0) yield page;
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** One GET from the start, whose headers say what the file is: a download read in order needs no other request. */
  async openRead(path: string): Promise<ReadHandle> {
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    const { client, bucket } = this.#home;
    const key = this.#home.key(segments);
    let out: GetObjectCommandOutput | null = null;
    if (segments.length > 0) {
      try {
        out = await this.#limit(() => client.send(new GetObjectCommand({ Bucket: bucket, Key: key })));
      } catch (err) {
        if (!isNotFound(err)) throw s3Fail(err, 'read', shown);
      }
    }
    if (out === null) {
      if (await this.#home.isFolder(segments, 'read', shown)) throw new FerryError('is_a_directory', `Cannot read ${shown}: it is a directory`);
      throw new FerryError('not_found', `Cannot read ${shown}: no such file or directory`);
    }
    return new S3ReadHandle(this.#home, key, fileOf(out), shown, out.Body as Readable | undefined);
  }

  async createUpload(path: string, options: UploadOptions): Promise<Upload> {
    checkSize(options.size);
    checkMtime(options.mtime);
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    const release = await this.#lock(segments, shown);
    try {
      const { target, replaces } = await this.#checkUpload(segments, shown, options);
      return await S3Upload.open(target, options.size, options.resume === true, replaces, target.parents, release);
    } catch (err) {
      release();
      throw err;
    }
  }

  async putWhole(path: string, bytes: Buffer, options: WholeOptions): Promise<Entry> {
    checkMtime(options.mtime);
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    const digest = createHash('sha256').update(bytes).digest('hex');
    if (digest !== options.sha256.toLowerCase()) throw new FerryError('digest_mismatch', `Upload of ${shown}: the SHA-256 of the bytes received differs from the declared one`);
    const release = await this.#lock(segments, shown);
    try {
      return await this.#limit(async () => storeWhole((await this.#checkUpload(segments, shown, options)).target, bytes, digest));
    } finally {
      release();
    }
  }

  async openBundle(): Promise<BundleSink | null> {
    return null;
  }

  async openBundleRead(): Promise<BundleSink | null> {
    return null;
  }

  async remove(path: string): Promise<void> {
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    const verb = 'remove';
    if (segments.length === 0) throw new FerryError('invalid_path', 'Cannot remove your home');
    const file = await this.#home.file(segments, verb, shown);
    if (file !== null) {
      await this.#delete(this.#home.key(segments), verb, shown);
      if (file.sha256 === null) await this.#home.dropSha256(segments);
      return;
    }
    const under = await this.#home.firstUnder(segments, 2, verb, shown);
    if (under.length === 0) throw new FerryError('not_found', `Cannot remove ${shown}: no such file or directory`);
    const marker = this.#home.folder(segments);
    if (under.some((o) => o.Key !== marker)) throw new FerryError('not_empty', `Cannot remove ${shown}: the directory is not empty`);
    this.#home.folders.clear();
    await this.#delete(marker, verb, shown);
  }

  async mkdir(path: string, options: { parents?: boolean } = {}): Promise<void> {
    const segments = parseVirtualPath(path);
    const shown = show(segments);
    const verb = 'create directory';
    const parents = options.parents === true;
    if (segments.length === 0) {
      if (parents) return;
      throw new FerryError('exists', 'Cannot create your home: it exists');
    }
    if ((await this.#home.file(segments, verb, shown)) !== null) {
      throw new FerryError(parents ? 'not_a_directory' : 'exists', `Cannot create directory ${shown}: ${parents ? 'a file is in the way' : 'it exists'}`);
    }
    if (await this.#home.isFolder(segments, verb, shown)) {
      if (parents) return;
      throw new FerryError('exists', `Cannot create directory ${shown}: it exists`);
    }
    await this.#home.parents(segments, parents, verb, shown);
    await this.#home.putMarker(segments, verb, shown);
  }

  /**
   * A file: copied (conditional on the ETag seen), the copy checked, then the original deleted — there is never
   * a moment with neither. A folder: only an empty one (its marker) moves; one that holds files is refused.
   */
  async rename(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<void> {
    const source = parseVirtualPath(from);
    const dest = parseVirtualPath(to);
    const shownFrom = show(source);
    const shownTo = show(dest);
    const verb = 'rename';
    if (source.length === 0) throw new FerryError('invalid_path', 'Cannot rename your home');
    if (dest.length === 0) throw new FerryError('invalid_path', `Cannot rename ${shownFrom} to your home`);
    if (source.join('/') === dest.join('/')) return;
    const overwrite = options.overwrite === true;
    const file = await this.#home.file(source, verb, shownFrom);
    if (file === null) {
      const under = await this.#home.firstUnder(source, 2, verb, shownFrom);
      if (under.length === 0) throw new FerryError('not_found', `Cannot rename ${shownFrom}: no such file or directory`);
      if (dest.length > source.length && dest.slice(0, source.length).join('/') === source.join('/')) {
        throw new FerryError('invalid_path', `Cannot move ${shownFrom} into itself`);
      }
      const marker = this.#home.folder(source);
      if (under.some((o) => o.Key !== marker)) {
        throw new FerryError('not_empty', `Cannot rename ${shownFrom}: on object storage a folder that holds files cannot be renamed (move its files, then remove it)`);
      }
      await this.#target(dest, false, verb, shownTo);
      await this.#home.parents(dest, false, verb, shownTo);
      await this.#home.putMarker(dest, verb, shownTo);
      this.#home.folders.clear();
      await this.#delete(marker, verb, shownFrom);
      return;
    }
    // Both names are held (no upload of either in this server meanwhile), so the original deleted is the one copied.
    const release = await this.#lock(dest, shownTo);
    let releaseSource: () => void = () => {};
    try {
      releaseSource = await this.#lock(source, shownFrom);
      await this.#target(dest, overwrite, verb, shownTo);
      await this.#home.parents(dest, false, verb, shownTo);
      const key = this.#home.key(dest);
      const { client, bucket } = this.#home;
      // A multipart object's digest is recorded beside it (S3Home.recordSha256): its copy carries it in metadata.
      const sha256 = await this.#home.sha256Of(source, file);
      const carried = file.sha256 === null && sha256 !== null;
      try {
        await client.send(
          new CopyObjectCommand({
            Bucket: bucket,
            Key: key,
            CopySource: `${bucket}/${encodeURIComponent(this.#home.key(source)).replaceAll('%2F', '/')}`,
            ...(carried ? { MetadataDirective: 'REPLACE', Metadata: { [META_MTIME]: String(file.mtime), [META_SHA256]: sha256 } } : { MetadataDirective: 'COPY' }),
          }),
        );
        // The copy is checked against what was seen of the original (size, time and digest it carries): a copy of
        // anything else is not followed by the delete. (A conditional copy on the ETag is not used: Swift compares
        // it with its own manifest's ETag for multipart objects, and refuses every such copy.)
        const copy = fileOf(await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key })));
        if (copy.size !== file.size || copy.mtime !== file.mtime || copy.sha256 !== (carried ? sha256 : file.sha256)) {
          throw new FerryError('internal', `Cannot rename ${shownFrom}: the copy in the object store differs from the original (the original is kept)`);
        }
      } catch (err) {
        throw s3Fail(err, verb, shownFrom);
      }
      await this.#delete(this.#home.key(source), verb, shownFrom);
      if (file.sha256 === null) await this.#home.dropSha256(source);
    } finally {
      releaseSource();
      release();
    }
  }

  async usage(): Promise<{ bytes: number; files: number }> {
    let bytes = 0;
    let files = 0;
    let token: string | undefined;
    do {
      const out = await this.#page(this.#home.root, undefined, 1000, token, 'your home');
      for (const o of out.Contents ?? []) {
        if (o.Key?.endsWith('/')) continue;
        bytes += o.Size ?? 0;
        files++;
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token !== undefined);
    return { bytes, files };
  }

  /** What is at an upload's or a rename's target: the file it replaces (with overwrite), or null; refusals. */
  async #target(segments: readonly string[], overwrite: boolean, verb: string, shown: string): Promise<Entry | null> {
    if (segments.length === 0) throw new FerryError('is_a_directory', `Cannot ${verb} ${shown}: it is a directory`);
    const file = await this.#home.file(segments, verb, shown);
    if (file !== null) {
      if (!overwrite) throw new FerryError('exists', `Cannot ${verb} ${shown}: it exists`);
      return fileEntry(segments.at(-1) as string, file);
    }
    if (await this.#home.isFolder(segments, verb, shown)) throw new FerryError('is_a_directory', `Cannot ${verb} ${shown}: it is a directory`);
    return null;
  }

  /**
   * `#target` for an upload in one request where it can: a listing from the target's key (delimited by '/') shows
   * both a file there and a folder of that name. A file to replace is then looked at itself (its metadata); a
   * listing cut short before either shows falls back to `#target`.
   */
  async #uploadTarget(segments: readonly string[], overwrite: boolean, shown: string): Promise<Entry | null> {
    if (segments.length === 0) throw new FerryError('is_a_directory', `Cannot upload ${shown}: it is a directory`);
    const key = this.#home.key(segments);
    const out = await this.#page(key, '/', 100, undefined, shown);
    const file = (out.Contents ?? []).some((o) => o.Key === key);
    const folder = (out.CommonPrefixes ?? []).some((p) => p.Prefix === `${key}/`);
    if (file || (!folder && out.IsTruncated)) return this.#target(segments, overwrite, 'upload', shown);
    if (folder) throw new FerryError('is_a_directory', `Cannot upload ${shown}: it is a directory`);
    return null;
  }

  /**
   * An upload's checks (createUpload, putWhole): what it replaces (`exists` without overwrite), and whether folders
   * above it are missing — `not_found` without `parents`, `permission_denied` without the mkdir permission; with
   * both, the upload makes them as it commits (`target.parents`).
   */
  async #checkUpload(segments: string[], shown: string, options: { overwrite?: boolean; parents?: boolean; mayCreateParents?: boolean; mtime?: number }): Promise<{ target: S3Target; replaces: Entry | null }> {
    const overwrite = options.overwrite === true;
    const replaces = await this.#uploadTarget(segments, overwrite, shown);
    let missing = false;
    try {
      await this.#home.parents(segments, false, 'upload', shown);
    } catch (err) {
      if (!(err instanceof FerryError) || err.code !== 'not_found' || options.parents !== true) throw err;
      if (options.mayCreateParents === false) throw new FerryError('permission_denied', 'Your account may not mkdir');
      missing = true;
    }
    const target: S3Target = { home: this.#home, segments, shown, overwrite, parents: missing, ...(options.mtime !== undefined ? { mtime: options.mtime } : {}) };
    return { target, replaces };
  }

  async #mustBeFolder(segments: readonly string[], verb: string, shown: string): Promise<void> {
    if (await this.#home.isFolder(segments, verb, shown)) return;
    if ((await this.#home.file(segments, verb, shown)) !== null) throw new FerryError('not_a_directory', `Cannot ${verb} ${shown}: it is not a directory`);
    throw new FerryError('not_found', `Cannot ${verb} ${shown}: no such file or directory`);
  }

  async #page(prefix: string, delimiter: string | undefined, max: number, token: string | undefined, shown: string): Promise<ListObjectsV2CommandOutput> {
    try {
      return await this.#home.client.send(
        new ListObjectsV2Command({ Bucket: this.#home.bucket, Prefix: prefix, MaxKeys: max, ...(delimiter ? { Delimiter: delimiter } : {}), ...(token ? { ContinuationToken: token } : {}) }),
      );
    } catch (err) {
      throw s3Fail(err, 'list', shown);
    }
  }

  async #delete(key: string, verb: string, shown: string): Promise<void> {
    try {
      await this.#home.client.send(new DeleteObjectCommand({ Bucket: this.#home.bucket, Key: key }));
    } catch (err) {
      throw s3Fail(err, verb, shown);
    }
  }

  /**
   * One upload (or rename without overwrite) per target at a time in this server, and with shared leases (several
   * servers on one store) in all of them: `busy` otherwise — after waiting a while for an upload of it in this server
   * that is ending (NameLocks.takeWhenFree; one on another server is not waited for). The hold lets go once.
   */
  async #lock(segments: readonly string[], shown: string): Promise<NameHold> {
    const key = this.#home.key(segments);
    const leases = this.#leases;
    let token: string | null = null;
    const giveLease = () => {
      if (leases !== null && token !== null) leases.give(key, token).catch(() => {}); // a lease left behind ends with its server
    };
    const hold = await this.#locks.takeWhenFree(key, giveLease);
    if (hold === null) throw new FerryError('busy', `Cannot upload ${shown}: an upload of it is in progress`);
    if (leases !== null) {
      try {
        token = await leases.take(key);
      } catch (err) {
        hold();
        throw err;
      }
      if (token === null) {
        hold();
        throw new FerryError('busy', `Cannot upload ${shown}: an upload of it is in progress on another server`);
      }
    }
    return hold;
  }
}

/** A name from a key that a virtual path could name (keys written by others may hold anything), or null. */
function nameOf(name: string | undefined): string | null {
  if (name === undefined || name === '') return null;
  try {
    const parsed = parseVirtualPath(name);
    return parsed.length === 1 && parsed[0] === name ? name : null;
  } catch {
    return null;
  }
}
