/**
 * The real object store the S3 tests run against: its endpoint and credentials come from the environment
 * (S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), as `scripts/services/swift.sh start DIR`
 * prints them. Each test file makes a bucket of its own and empties and removes it at the end.
 */
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, ListMultipartUploadsCommand, AbortMultipartUploadCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Test } from 'uvu';
import { makeS3Client } from '../../src/storage/s3/client.ts';
import { testWhen } from '../skip.ts';

export interface TestStore {
  endpoint: string;
  client: S3Client;
  bucket: string;
  /** Environment for a `ferry serve` child that uses the store. */
  env: Record<string, string>;
}

/** Why the store is not there (for skip), or null when it is. */
export function storeMissing(): string | null {
  if (!process.env.S3_ENDPOINT || !process.env.AWS_ACCESS_KEY_ID || !process.env.AWS_SECRET_ACCESS_KEY) {
    return 'no object store: run `scripts/services/swift.sh start DIR` (after `install`, as root) and export the lines it prints';
  }
  return null;
}

/** A fresh bucket in the store. */
export async function openStore(): Promise<TestStore> {
  const endpoint = process.env.S3_ENDPOINT as string;
  const client = makeS3Client({ endpoint });
  const bucket = `ferry-test-${randomBytes(5).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const env = {
    AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID as string,
    AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY as string,
    AWS_REGION: process.env.AWS_REGION ?? 'us-east-1',
  };
  return { endpoint, client, bucket, env };
}

/** Every key in the bucket (under `prefix`). */
export async function allKeys(store: TestStore, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await store.client.send(new ListObjectsV2Command({ Bucket: store.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
    for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key);
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** Multipart uploads in progress in the bucket. */
export async function openUploads(store: TestStore): Promise<Array<{ key: string; id: string }>> {
  const out = await store.client.send(new ListMultipartUploadsCommand({ Bucket: store.bucket }));
  return (out.Uploads ?? []).map((u) => ({ key: u.Key ?? '', id: u.UploadId ?? '' }));
}

/** Empties and removes the bucket, and closes the client. */
export async function closeStore(store: TestStore): Promise<void> {
  for (const u of await openUploads(store)) await store.client.send(new AbortMultipartUploadCommand({ Bucket: store.bucket, Key: u.key, UploadId: u.id })).catch(() => {});
  const keys = await allKeys(store);
  for (let i = 0; i < keys.length; i += 1000) {
    await store.client.send(new DeleteObjectsCommand({ Bucket: store.bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }));
  }
  await store.client.send(new DeleteBucketCommand({ Bucket: store.bucket })).catch(() => {});
  store.client.destroy();
}

/** A test of `suite` that runs when the store is there, and is skipped (counted, never passed) otherwise. */
export function withStore(suite: Test, name: string, body: () => Promise<void>): void {
  testWhen(suite, storeMissing, name, body);
}

/**
 * A TCP forwarder in front of the store, on 127.0.0.1: `cut()` resets every connection and every new one until
 * `restore()` — the store disappearing and coming back, as the server sees it (real sockets, the real store).
 */
export interface Forwarder {
  endpoint: string;
  cut(): void;
  restore(): void;
  /** Bytes sent towards the store so far. */
  readonly sent: number;
  close(): Promise<void>;
}

export async function startForwarder(target: string): Promise<Forwarder> {
  const { hostname, port } = new URL(target);
  let down = false;
  let sent = 0;
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (down) return void client.resetAndDestroy();
    const upstream = net.connect(Number(port), hostname);
    open.add(client);
    open.add(upstream);
    const drop = () => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (d: Buffer) => (sent += d.length));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: local } = server.address() as net.AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${local}`,
    get sent() {
      return sent;
    },
    cut: () => {
      down = true;
      for (const s of open) s.resetAndDestroy();
      open.clear();
    },
    restore: () => {
      down = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
