/**
 * The ferry client library, used by `ferry connect` and `ferry batch` alike: `connect` opens a verified
 * connection (connection.ts, trust.ts), `FerryClient` makes typed, pipelined calls (client.ts, mux.ts) and
 * verified transfers (upload.ts, download.ts).
 *
 * @example
 * ```ts
 * import { connect } from './client/mod.ts';
 * const client = await connect({ host: 'files.example.org', fingerprint: 'SHA256:...' });
 * await client.login('alice', process.env.FERRY_PASSWORD ?? '');
 * const { sha256 } = await client.upload('./report.pdf', 'reports/report.pdf', { parents: true });
 * await client.quit();
 * ```
 */
export { connect, probeIdentity, type ConnectOptions } from './connection.ts';
export { FerryClient, type AccountInfo, type ListResult, type StatResult, type UsageInfo } from './client.ts';
export { type BundleGet, type BundleHooks, type BundlePut, type BundleResult } from './bundle.ts';
export { PARTIAL_SUFFIX, type DownloadOptions } from './download.ts';
export { AUTO_RESUME_BYTES, type UploadOptions } from './upload.ts';
export { TooLargeForBundle, UnexpectedDigestError, type TransferProgress, type TransferResult } from './transfer.ts';
export { trustNotice, type CaVerdict, type HostCheck, type PresentedIdentity, type Trust, type TrustStatus } from './trust.ts';
