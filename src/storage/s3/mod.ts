/** The S3-compatible object-store driver: `ferry serve --storage s3://BUCKET[/PREFIX]`. */
export { S3Driver } from './driver.ts';
export { parseS3Url, type S3Location } from './location.ts';
