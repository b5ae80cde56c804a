import {
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
}

/**
 * One user's home in the bucket: every key is `<prefix>/homes/<user>/` followed by the segments of a parsed
 * virtual path joined with '/', and nothing else — a request cannot name a key of another user or outside the
 * prefix, because segments never hold '/', '..' or '.' (core/paths.ts) and user names are single segments.
 * Folders are key prefixes; a folder that must exist while empty (made by mkdir, or as an upload's parent) also
 * has a marker object, its key with a trailing '/'.
 */
export class S3Home {
  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    /** `<prefix>/homes/<user>/` (ends with '/'). */
    readonly root: string,
  ) {}

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
      if (await this.isFolder(dir, verb, shown)) break;
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

  /** Makes the marker object of a folder (it then exists while empty). */
  async putMarker(segments: readonly string[], verb: string, shown: string): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: `${this.key(segments)}/`, Body: new Uint8Array(0), Metadata: { [META_MTIME]: String(Date.now()) } }));
    } catch (err) {
      throw s3Fail(err, verb, shown);
    }
  }
}

export function fileOf(head: HeadObjectCommandOutput): FileObject {
  const meta = head.Metadata ?? {};
  const mtime = Number(meta[META_MTIME]);
  const sha256 = meta[META_SHA256];
  return {
    size: head.ContentLength ?? 0,
    mtime: Number.isSafeInteger(mtime) && mtime >= 0 ? mtime : (head.LastModified?.getTime() ?? 0),
    etag: head.ETag ?? '',
    sha256: sha256 !== undefined && /^[0-9a-f]{64}$/.test(sha256) ? sha256 : null,
  };
}

export function fileEntry(name: string, f: FileObject): Entry {
  return { name, type: 'file', size: f.size, mtime: Math.floor(f.mtime) };
}
