import {
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type HeadObjectCommandOutput,
  type S3Client,
  type _Object,
} from '@aws-sdk/client-s3';
import { FerryError } from '../../core/errors.ts';
import { joinVirtual, quotePath } from '../../core/paths.ts';
import type { Entry } from '../../core/types.ts';
import { isNotFound, s3Fail } from './client.ts';

/** User metadata the driver keeps on each object (x-amz-meta-*). */
export const META_MTIME = 'ferry-mtime';
export const META_SHA256 = 'ferry-sha256';

/** A file object: what HeadObject says of it. */
export interface FileObject {
  size: number;
  mtime: number;
  etag: string;
  /** The SHA-256 recorded at upload (hex), or null for an object stored without it. */
  sha256: string | null;
  /** The store's LastModified (ms since epoch). */
  modified: number;
}

/**
 * One user's home in the bucket: every key is `<prefix>/homes/<user>/` followed by the segments of a parsed
 * virtual path joined with '/', and nothing else — a request cannot name a key of another user or outside the
 * prefix, because segments never hold '/', '..' or '.' (core/paths.ts) and user names are single segments.
 * Folders are key prefixes; a folder that must exist while empty (made by mkdir, or as an upload's parent) also
 * has a marker object, its key with a trailing '/'. Beside the homes, and out of every user's reach, the driver
 * keeps the descriptions of uploads in progress (`<prefix>/uploads/<user>/`) and the digests of multipart objects
 * (`<prefix>/sums/<user>/`).
 */
export class S3Home {
  /** `<prefix>/homes/<user>/` (ends with '/'). */
  readonly root: string;
  /** `<prefix>/uploads/<user>/`: where uploads in progress are described, to resume them (upload.ts). */
  readonly uploads: string;
  /** `<prefix>/sums/<user>/`: the SHA-256 of multipart objects, recorded after they are completed (sums.ts). */
  readonly sums: string;

  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    /** The prefix every key of this server starts with ('' or `prefix/`). */
    base: string,
    user: string,
    /** Folders seen lately (the driver's, shared by its homes). */
    readonly folders: FolderCache = new FolderCache(),
  ) {
    this.root = `${base}homes/${user}/`;
    this.uploads = `${base}uploads/${user}/`;
    this.sums = `${base}sums/${user}/`;
  }

  /** The key of a file (or, with a trailing '/', of a folder's marker and contents). */
  key(segments: readonly string[]): string {
    return this.root + segments.join('/');
  }

  /** The prefix of everything in a folder: `<root>a/b/`, or the root itself for the home. */
  folder(segments: readonly string[]): string {
    return segments.length === 0 ? this.root : `${this.key(segments)}/`;
  }

  /** The file at `segments`, or null (a folder, or nothing). */
  async file(segments: readonly string[], verb: string, shown: string): Promise<FileObject | null> {
    if (segments.length === 0) return null;
    let head: HeadObjectCommandOutput;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(segments) }));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw s3Fail(err, verb, shown);
    }
    return fileOf(head);
  }

  /** Whether `segments` is a folder: the home, or a key prefix with anything under it (its marker included). */
  async isFolder(segments: readonly string[], verb: string, shown: string): Promise<boolean> {
    if (segments.length === 0) return true;
    return (await this.firstUnder(segments, 1, verb, shown)).length > 0;
  }

  /** Up to `max` keys under a folder (its marker counts), in key order. */
  async firstUnder(segments: readonly string[], max: number, verb: string, shown: string): Promise<_Object[]> {
    try {
      const out = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.folder(segments), MaxKeys: max }));
      return out.Contents ?? [];
    } catch (err) {
      throw s3Fail(err, verb, shown);
    }
  }

  /**
   * Checks that the folders above `segments` exist (or, with `create`, makes the missing ones: a marker each);
   * `not_found` naming the first missing one, `not_a_directory` when a file stands in the way. Returns how many
   * folders it made.
   */
  async parents(segments: readonly string[], create: boolean, verb: string, shown: string): Promise<number> {
    const missing: number[] = [];
    for (let i = segments.length - 1; i >= 1; i--) {
      const dir = segments.slice(0, i);
      if (this.folders.has(this.folder(dir))) break;
      if (await this.isFolder(dir, verb, shown)) {
        this.folders.add(this.folder(dir));
        break;
      }
      if ((await this.file(dir, verb, shown)) !== null) {
        throw new FerryError('not_a_directory', `Cannot ${verb} ${shown}: ${quotePath(joinVirtual(dir))} is a file`);
      }
      missing.unshift(i);
    }
    if (missing.length === 0) return 0;
    if (!create) {
      const first = quotePath(joinVirtual(segments.slice(0, missing[0])));
      throw new FerryError('not_found', `Cannot ${verb} ${shown}: directory ${first} does not exist`);
    }
    for (const i of missing) await this.putMarker(segments.slice(0, i), verb, shown);
    return missing.length;
  }

  /**
   * Records the SHA-256 of a multipart object just completed (its metadata was set before its digest was known):
   * an empty object at `<sums>/<path>` naming the object's ETag, LastModified and size, so that the record counts
   * only for this very object (an object put there later differs in one of them). Best effort: without a record,
   * `recordedSha256` is null and the file is read to hash it.
   */
  async recordSha256(segments: readonly string[], sha256: string): Promise<void> {
    try {
      const f = fileOf(await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(segments) })));
      const Metadata = { [META_SHA256]: sha256, 'ferry-etag': f.etag.replaceAll('"', ''), 'ferry-modified': String(f.modified), 'ferry-size': String(f.size) };
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.sums + segments.join('/'), Body: new Uint8Array(0), Metadata }));
    } catch {
      // a digest not recorded is computed when asked for
    }
  }

  /** The SHA-256 of a file: from its own metadata, or from the record `recordSha256` made for this very object; else null. */
  async sha256Of(segments: readonly string[], f: FileObject): Promise<string | null> {
    if (f.sha256 !== null) return f.sha256;
    let head: HeadObjectCommandOutput;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.sums + segments.join('/') }));
    } catch {
      return null;
    }
    const m = head.Metadata ?? {};
    const same = m['ferry-etag'] === f.etag.replaceAll('"', '') && m['ferry-modified'] === String(f.modified) && m['ferry-size'] === String(f.size);
    const sha256 = m[META_SHA256];
    return same && sha256 !== undefined && /^[0-9a-f]{64}$/.test(sha256) ? sha256 : null;
  }

  /** Deletes the digest record of a file (after the file went). Best effort: a stale record matches no object. */
  async dropSha256(segments: readonly string[]): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.sums + segments.join('/') })).catch(() => {});
  }

  /** Makes the marker object of a folder (it then exists while empty). */
  async putMarker(segments: readonly string[], verb: string, shown: string): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: `${this.key(segments)}/`, Body: new Uint8Array(0), Metadata: { [META_MTIME]: String(Date.now()) } }));
    } catch (err) {
      throw s3Fail(err, verb, shown);
    }
  }
}

/** How long a folder seen to exist is taken to exist by `parents` without listing it again. */
const FOLDER_TTL_MS = 2_000;

/**
 * Folders seen to exist in the last FOLDER_TTL_MS (by key prefix), so that many uploads into one folder do not each
 * list it to check that it is there. Forgotten at once when this server removes or renames a folder; a folder
 * removed by another server meanwhile comes back as the prefix of a file uploaded into it in those two seconds.
 */
export class FolderCache {
  readonly #until = new Map<string, number>();

  has(prefix: string): boolean {
    const until = this.#until.get(prefix);
    if (until === undefined) return false;
    if (until >= Date.now()) return true;
    this.#until.delete(prefix);
    return false;
  }

  add(prefix: string): void {
    if (this.#until.size >= 10_000) this.#until.clear();
    this.#until.set(prefix, Date.now() + FOLDER_TTL_MS);
  }

  clear(): void {
    this.#until.clear();
  }
}

/** What HeadObject (or GetObject) says of an object, as the driver keeps it. */
export function fileOf(head: Pick<HeadObjectCommandOutput, 'ContentLength' | 'Metadata' | 'ETag' | 'LastModified'>): FileObject {
  const meta = head.Metadata ?? {};
  const mtime = Number(meta[META_MTIME]);
  const sha256 = meta[META_SHA256];
  return {
    size: head.ContentLength ?? 0,
    mtime: Number.isSafeInteger(mtime) && mtime >= 0 ? mtime : (head.LastModified?.getTime() ?? 0),
    etag: head.ETag ?? '',
    sha256: sha256 !== undefined && /^[0-9a-f]{64}$/.test(sha256) ? sha256 : null,
    modified: head.LastModified?.getTime() ?? 0,
  };
}

export function fileEntry(name: string, f: FileObject): Entry {
  return { name, type: 'file', size: f.size, mtime: Math.floor(f.mtime) };
}
