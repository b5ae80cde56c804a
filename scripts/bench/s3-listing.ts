#!/usr/bin/env -S npx tsx
// Memory of listing a folder of many objects through the s3 driver: puts COUNT (default 100,000) one-byte objects
// under one folder of a user's home (once: kept for later runs), then lists the folder (pages of 1000), walks it
// (listTree) and sums it up (usage), sampling this process's RSS and heap every 20 ms. Prints one JSON line.
// Needs S3_ENDPOINT and AWS_* (scripts/services/swift.sh env DIR) and a bucket (scripts/services/s3-bucket.mjs).
//
//   npx tsx scripts/bench/s3-listing.ts [BUCKET] [COUNT]
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { makeS3Client } from '../../src/storage/s3/client.ts';
import { S3Driver } from '../../src/storage/s3/mod.ts';

const bucket = process.argv[2] ?? 'ferry-bench';
const COUNT = Number(process.argv[3] ?? 100_000);
const endpoint = process.env.S3_ENDPOINT;
if (!endpoint) throw new Error('S3_ENDPOINT is not set (scripts/services/swift.sh env DIR)');
const prefix = 'listing';
const folder = `${prefix}/homes/bench/many/`;

const client = makeS3Client({ endpoint });
let have = 0;
let token: string | undefined;
do {
  const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: folder, ContinuationToken: token }));
  have += out.KeyCount ?? 0;
  token = out.IsTruncated ? out.NextContinuationToken : undefined;
} while (token);
if (have < COUNT) {
  const started = Date.now();
  const limit = pLimit(64);
  const jobs: Promise<unknown>[] = [];
  for (let i = have; i < COUNT; i++) {
    jobs.push(limit(() => client.send(new PutObjectCommand({ Bucket: bucket, Key: `${folder}f${String(i).padStart(7, '0')}`, Body: 'x' }))));
  }
  await Promise.all(jobs);
  console.error(`put ${COUNT - have} objects in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}
client.destroy();

global.gc?.();
const driver = new S3Driver({ bucket, prefix }, { endpoint });
const storage = driver.forUser('bench');
const base = process.memoryUsage();
let peakRss = base.rss;
let peakHeap = base.heapUsed;
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakHeap = Math.max(peakHeap, m.heapUsed);
}, 20);
const time = async (what: () => Promise<number>): Promise<{ count: number; seconds: number }> => {
  const t0 = performance.now();
  const count = await what();
  return { count, seconds: Number(((performance.now() - t0) / 1000).toFixed(2)) };
};
const list = await time(async () => {
  let n = 0;
  for await (const page of storage.list('many')) n += page.length;
  return n;
});
const tree = await time(async () => {
  let n = 0;
  for await (const page of storage.listTree('many')) n += page.length;
  return n;
});
const usage = await time(async () => (await storage.usage()).files);
clearInterval(sampler);
driver.close();
const MB = (b: number) => Number((b / 1e6).toFixed(1));
console.log(JSON.stringify({ objects: COUNT, list, listTree: tree, usage, rssBeforeMB: MB(base.rss), rssPeakMB: MB(peakRss), heapBeforeMB: MB(base.heapUsed), heapPeakMB: MB(peakHeap) }));
