#!/usr/bin/env node
// Creates a bucket in the S3-compatible store named by S3_ENDPOINT (credentials from AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY, as scripts/services/swift.sh prints them); an existing bucket of ours is fine.
//   node scripts/services/s3-bucket.mjs NAME
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const name = process.argv[2];
if (!name || !process.env.S3_ENDPOINT) {
  console.error('usage: S3_ENDPOINT=... node scripts/services/s3-bucket.mjs NAME');
  process.exit(2);
}
const client = new S3Client({ endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' });
try {
  await client.send(new CreateBucketCommand({ Bucket: name }));
  console.log(`bucket ${name} made`);
} catch (err) {
  if (err?.name !== 'BucketAlreadyOwnedByYou') {
    console.error(`cannot make bucket ${name}: ${err?.name ?? err}`);
    process.exit(1);
  }
  console.log(`bucket ${name} is there`);
} finally {
  client.destroy();
}
