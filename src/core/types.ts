/** One entry of a directory listing, as sent in `entries` and `stat`. */
export interface Entry {
  name: string;
  type: 'file' | 'dir';
  size: number;
  /** Modification time, whole milliseconds since the epoch. */
  mtime: number;
}

/** Stored bytes and files of a user, and the limits when a quota applies (LIST and STAT replies). */
export interface Usage {
  bytes: number;
  files: number;
  maxBytes?: number;
  maxFiles?: number;
}
