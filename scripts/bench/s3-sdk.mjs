#!/usr/bin/env node
// The yardstick for ferry on an object store: the AWS SDK moving the same files directly, with the part size and
// concurrency ferry's s3 driver uses (8 MiB parts, 4 in flight; small files CONC at once). Prints one JSON line:
// { seconds, cpuSeconds, sha256? }. Reads the store from S3_ENDPOINT and the AWS_* environment, as ferry does.
//
//   node scripts/bench/s3-sdk.mjs up FILE s3://BUCKET/KEY         lib-storage Upload (multipart)
//   node scripts/bench/s3-sdk.mjs down s3://BUCKET/KEY FILE       one GetObject streamed to FILE
//   node scripts/bench/s3-sdk.mjs putmany DIR s3://BUCKET/PREFIX  PutObject per file, CONC (default 16) at once
//   node scripts/bench/s3-sdk.mjs getmany s3://BUCKET/PREFIX DIR  ListObjectsV2 + GetObject per object, CONC at once
//   node scripts/bench/s3-sdk.mjs hash s3://BUCKET/KEY            prints SIZE:SHA256 of the object (to verify a run)
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import pLimit from 'p-limit';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const [verb, a, b] = process.argv.slice(2);
const CONC = Number(process.env.CONC ?? 16);
const client = new S3Client({
  region: process.env.AWS_REGION ?? 'us-east-1',
  endpoint: process.env.S3_ENDPOINT,
  forcePathStyle: true,
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});
const s3 = (url) => {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url ?? '');
  if (!m) throw new Error(`not an s3:// URL: ${url}`);
  return { Bucket: m[1], Key: m[2] };
};

const t0 = performance.now();
const c0 = process.cpuUsage();
if (verb === 'up') {
  const up = new Upload({ client, params: { ...s3(b), Body: createReadStream(a, { highWaterMark: 1 << 20 }) }, partSize: 8 * 1024 * 1024, queueSize: 4 });
  await up.done();
} else if (verb === 'down') {
  const out = await client.send(new GetObjectCommand(s3(a)));
  await pipeline(out.Body, createWriteStream(b));
} else if (verb === 'putmany') {
  const { Bucket, Key } = s3(b);
  const limit = pLimit(CONC);
  await Promise.all(readdirSync(a).map((name) => limit(() => client.send(new PutObjectCommand({ Bucket, Key: `${Key}/${name}`, Body: readFileSync(join(a, name)) })))));
} else if (verb === 'getmany') {
  const { Bucket, Key } = s3(a);
  mkdirSync(b, { recursive: true });
  const limit = pLimit(CONC);
  const jobs = [];
  let token;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket, Prefix: `${Key}/`, ContinuationToken: token }));
    for (const o of (page.Contents ?? []).filter((x) => !x.Key.endsWith('/'))) {
      jobs.push(limit(async () => {
        const out = await client.send(new GetObjectCommand({ Bucket, Key: o.Key }));
        writeFileSync(join(b, o.Key.slice(Key.length + 1)), await out.Body.transformToByteArray());
      }));
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  await Promise.all(jobs);
} else if (verb === 'hash') {
  const out = await client.send(new GetObjectCommand(s3(a)));
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of out.Body) {
    h.update(chunk);
    size += chunk.length;
  }
  console.log(`${size}:${h.digest('hex')}`);
  client.destroy();
  process.exit(0);
} else {
  console.error('usage: s3-sdk.mjs up|down|putmany|getmany|hash ...');
  process.exit(2);
}
const cpu = process.cpuUsage(c0);
client.destroy();
console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 }));
