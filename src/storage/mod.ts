/**
 * Storage: the per-user `Storage` interface, the virtual-path jail, and the local-disk driver.
 *
 * @example
 * ```ts
 * import { LocalDiskDriver } from './storage/mod.ts';
 * const storage = new LocalDiskDriver('/var/lib/ferry').forUser('alice');
 * for await (const page of storage.list('')) console.log(page);
 * ```
 */
export type { ReadHandle, Storage, StorageDriver, Upload, UploadOptions } from './storage.ts';
export { joinVirtual, MAX_PATH_BYTES, MAX_SEGMENT_BYTES, parseVirtualPath, quotePath } from './paths.ts';
export { LocalDiskDriver } from './local.ts';
