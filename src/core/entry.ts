/** One entry of a directory listing, as sent in `entries` and `stat`. */
export interface Entry {
  name: string;
  type: 'file' | 'dir';
  size: number;
  /** Modification time, whole milliseconds since the epoch. */
  mtime: number;
}
