/**
 * Byte sizes as people write them in a config file, and as the quota shows them.
 *
 * Units follow rsync: `KiB`/`MiB`/`GiB`/`TiB`/`PiB` and the bare letters `K`/`M`/`G`/`T`/`P` are powers of
 * 1024; `KB`/`MB`/`GB`/`TB`/`PB` are powers of 1000; `B` (or no unit) is bytes. Case does not matter.
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

/**
 * A size in whole bytes from a number of bytes or a string such as `"10 MiB"`, `"1.5GB"`, `"512"`;
 * fractions of a byte are dropped. Returns null for anything that is not a size (negative, not finite,
 * unknown unit, beyond 2^53 - 1 bytes).
 *
 * @example
 * ```ts
 * parseSize('10 MiB'); // 10485760
 * parseSize('1.5GB');  // 1500000000
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
