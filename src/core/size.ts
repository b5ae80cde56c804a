/**
 * Byte sizes: one rule for everything a person writes (command-line flags, the config file, plugin options).
 *
 * A number of bytes, or a number (fractions allowed) and a unit, case ignored, spaces allowed between:
 * `K` `M` `G` `T` `P` and `KiB` `MiB` `GiB` `TiB` `PiB` are powers of 1024; `KB` `MB` `GB` `TB` `PB` are
 * powers of 1000 (as rsync and the IEC write them); `B`, `byte`, `bytes` or no unit are bytes. So `1GB` is
 * 1,000,000,000 bytes, `1G` and `1 GiB` are 1,073,741,824.
 */

const MULTIPLIERS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  byte: 1,
  bytes: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
  p: 1024 ** 5,
  pib: 1024 ** 5,
  pb: 1000 ** 5,
};

const SIZE = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i;

/** How the rule reads in an error message. */
export const SIZE_RULE = "a size such as 1048576, '500M', '20 GiB' (powers of 1024) or '1GB' (powers of 1000)";

/**
 * A size in whole bytes from a number of bytes or a string (see the rule above); fractions of a byte are
 * dropped. Null for anything that is not a size: negative, not finite, an unknown unit, beyond 2^53 - 1.
 *
 * @example
 * ```ts
 * parseSize('10 MiB'); // 10485760
 * parseSize('1GB');    // 1000000000
 * parseSize('1G');     // 1073741824
 * parseSize('10 MB?'); // null
 * ```
 */
export function parseSize(value: unknown): number | null {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const m = SIZE.exec(value);
    const multiplier = m ? MULTIPLIERS[(m[2] as string).toLowerCase()] : undefined;
    if (!m || multiplier === undefined) return null;
    bytes = Number(m[1]) * multiplier;
  } else {
    return null;
  }
  if (!Number.isFinite(bytes) || bytes < 0) return null;
  bytes = Math.floor(bytes);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/**
 * A size for messages: binary units, at most two decimals, no trailing zeros.
 *
 * @example
 * ```ts
 * formatSize(9542042);  // '9.1 MiB'
 * formatSize(10485760); // '10 MiB'
 * formatSize(512);      // '512 B'
 * ```
 */
export function formatSize(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const shown = unit === 0 ? String(value) : String(Number(value.toFixed(2)));
  return `${shown} ${UNITS[unit]}`;
}

/**
 * A size for tables and progress: three significant figures.
 *
 * @example
 * ```ts
 * formatBytes(11);         // '11 B'
 * formatBytes(15018);      // '14.7 KiB'
 * formatBytes(1073741824); // '1.00 GiB'
 * ```
 */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 2) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${bytes} B`;
  return `${value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)} ${UNITS[unit]}`;
}
