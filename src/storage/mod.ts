/**
 * Storage: the per-user `Storage` interface every driver implements, and the drivers (the local disk for now).
 * Virtual paths are parsed by core/paths.ts.
 *
 * @example
 * ```ts
 * import { LocalDiskDriver } from './storage/mod.ts';
 * const storage = new LocalDiskDriver('/var/lib/ferry').forUser('alice');
 * for await (const page of storage.list('')) console.log(page);
 * ```
 */
export type { ReadHandle, Storage, StorageDriver, Upload, UploadOptions } from './storage.ts';
export { LocalDiskDriver } from './local/mod.ts';
