import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  type Part,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { joinVirtual, parseVirtualPath } from '../../core/paths.ts';
import { isNotFound } from './client.ts';
import type { S3Home } from './home.ts';

/** A part stored in a multipart upload: its number, the ETag the store gave it, and its size. */
export interface StoredPart {
  n: number;
  etag: string;
  size: number;
}

/**
 * What an upload in progress leaves in `<prefix>/uploads/<user>/<sha256(path)>-<size>.<uploadId>` after each part
 * the store has taken (the parts in order from the first), so that the upload can go on from there later: after
 * the connection dropped, after a restart, or on another server sharing the store.
 */
export interface Checkpoint {
  v: 1;
  /** The virtual path and declared size the upload is for (also in the key: checked when read). */
  path: string;
  size: number;
  uploadId: string;
  /** The time the object will carry (set when the multipart upload was created). */
  mtime: number;
  parts: StoredPart[];
  /** The SHA-256 state after the last of `parts` (hash-wasm's `save()`, base64). */
  state: string;
}

/** An upload found where it stopped, its parts checked against the store. */
export interface Resumable {
  key: string;
  checkpoint: Checkpoint;
  offset: number;
}

/** The key prefix of the checkpoints of an upload of `segments` with this declared size (one per multipart upload). */
export function checkpointPrefix(home: S3Home, segments: readonly string[], size: number): string {
  return `${home.uploads}${createHash('sha256').update(joinVirtual(segments)).digest('hex')}-${size}.`;
}

/** The multipart upload a checkpoint key is for (everything after the first '.' of its last segment). */
export function uploadIdOf(key: string): string {
  const name = key.slice(key.lastIndexOf('/') + 1);
  return name.slice(name.indexOf('.') + 1);
}

export async function writeCheckpoint(home: S3Home, prefix: string, cp: Checkpoint): Promise<void> {
  await home.client.send(
    new PutObjectCommand({ Bucket: home.bucket, Key: prefix + cp.uploadId, Body: JSON.stringify(cp), ContentType: 'application/json' }),
  );
}

/**
 * Deletes a checkpoint, and with `object` (the key of the file it is for) its multipart upload too — the upload's
 * id is in the checkpoint's key. Failures are left to the sweeper.
 */
export async function dropCheckpoint(home: S3Home, key: string, object: string | null): Promise<void> {
  const { client, bucket } = home;
  if (object !== null) await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: object, UploadId: uploadIdOf(key) })).catch(() => {});
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch(() => {});
}

/**
 * The upload of `segments` (declared `size`) that can go on: the newest checkpoint under `prefix` whose parts the
 * store still holds with the same ETags and sizes — verified, not trusted. Every other checkpoint there (older,
 * or whose parts are gone or differ, or for another time) is dropped with its multipart upload. Null: none.
 */
export async function findResumable(home: S3Home, prefix: string, segments: readonly string[], size: number, mtime: number | undefined): Promise<Resumable | null> {
  const listed = await home.client.send(new ListObjectsV2Command({ Bucket: home.bucket, Prefix: prefix, MaxKeys: 100 }));
  const found = (listed.Contents ?? []).sort((a, b) => (b.LastModified?.getTime() ?? 0) - (a.LastModified?.getTime() ?? 0));
  let chosen: Resumable | null = null;
  for (const object of found) {
    const key = object.Key as string;
    const cp: Checkpoint | null = chosen === null ? await readCheckpoint(home, key).catch((err: unknown) => (isNotFound(err) ? null : Promise.reject(err))) : null;
    const fits = cp !== null && cp.path === joinVirtual(segments) && cp.size === size && cp.uploadId === uploadIdOf(key) && (mtime === undefined || mtime === cp.mtime);
    if (fits && (await partsHeld(home, cp))) {
      chosen = { key, checkpoint: cp, offset: cp.parts.reduce((sum, p) => sum + p.size, 0) };
      continue;
    }
    await dropCheckpoint(home, key, home.key(segments));
  }
  return chosen;
}

async function readCheckpoint(home: S3Home, key: string): Promise<Checkpoint | null> {
  const out = await home.client.send(new GetObjectCommand({ Bucket: home.bucket, Key: key }));
  const text = (await out.Body?.transformToString('utf8')) ?? '';
  let cp: unknown;
  try {
    cp = JSON.parse(text);
  } catch {
    return null;
  }
  return isCheckpoint(cp) ? cp : null;
}

function isCheckpoint(x: unknown): x is Checkpoint {
  const c = x as Partial<Checkpoint> | null;
  if (c === null || typeof c !== 'object' || c.v !== 1) return false;
  if (typeof c.path !== 'string' || typeof c.uploadId !== 'string' || typeof c.state !== 'string') return false;
  if (!Number.isSafeInteger(c.size) || !Number.isSafeInteger(c.mtime) || !Array.isArray(c.parts) || c.parts.length === 0) return false;
  return c.parts.every((p: Partial<StoredPart>, i) => p !== null && typeof p === 'object' && p.n === i + 1 && typeof p.etag === 'string' && Number.isSafeInteger(p.size) && (p.size as number) > 0);
}

/** Whether the store holds every part of the checkpoint, each with its ETag and size. */
async function partsHeld(home: S3Home, cp: Checkpoint): Promise<boolean> {
  const held = new Map<number, Part>();
  let marker: string | undefined;
  try {
    for (let page = 0; page < 20; page++) {
      const out = await home.client.send(
        new ListPartsCommand({ Bucket: home.bucket, Key: home.key(parseVirtualPath(cp.path)), UploadId: cp.uploadId, ...(marker ? { PartNumberMarker: marker } : {}) }),
      );
      for (const p of out.Parts ?? []) if (p.PartNumber !== undefined) held.set(p.PartNumber, p);
      if (!out.IsTruncated || out.NextPartNumberMarker === undefined) break;
      marker = String(out.NextPartNumberMarker);
    }
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
  return cp.parts.every((p) => {
    const h = held.get(p.n);
    return h !== undefined && unquote(h.ETag) === unquote(p.etag) && h.Size === p.size;
  });
}

function unquote(etag: string | undefined): string {
  return (etag ?? '').replaceAll('"', '');
}
