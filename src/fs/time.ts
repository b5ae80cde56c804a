/**
 * The value to give `utimes`/`futimes` (seconds since the epoch) so that a file's modification time reads back
 * as exactly `ms` whole milliseconds.
 *
 * A time handed over as a Date (or as `ms / 1000`) is a double number of seconds that the runtime splits into
 * seconds and nanoseconds, then truncates to microseconds: 1796228384741 ms became ...740.999 and was read
 * back, floored, as ...740. One microsecond more than the time lies above every such rounding error (a double
 * near 2 x 10^9 seconds is exact to a quarter of a microsecond), so the stored time is `ms` or `ms` and one
 * microsecond, and always reads back (floored to milliseconds) as `ms`.
 *
 * @example
 * ```ts
 * await handle.utimes(new Date(), utimeSeconds(1796228384741));
 * Math.floor((await handle.stat()).mtimeMs); // 1796228384741
 * ```
 */
export function utimeSeconds(ms: number): number {
  return (Math.floor(ms) + 0.001) / 1000;
}
