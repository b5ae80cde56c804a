/**
 * The value to give `utimes`/`futimes` (seconds since the epoch) so that a file's modification time reads back
 * as exactly `ms` whole milliseconds.
 *
 * A time handed over as a Date (or as `ms / 1000`) is a double number of seconds that the runtime splits into
 * seconds and nanoseconds, then (Node's libuv) truncates to microseconds: 1796228384741 ms became ...740.999
 * and was read back, floored, as ...740. Half a microsecond more than the time lies above every such rounding
 * error and below the next microsecond (a double of seconds until the year 2106 is exact to a quarter of a
 * microsecond), so a runtime that truncates to microseconds stores exactly `ms`, one that keeps nanoseconds
 * stores `ms` and 500 ns, and both read back, floored to milliseconds, as `ms`.
 *
 * @example
 * ```ts
 * await handle.utimes(new Date(), utimeSeconds(1796228384741));
 * Math.floor((await handle.stat()).mtimeMs); // 1796228384741
 * ```
 */
export function utimeSeconds(ms: number): number {
  return (Math.floor(ms) + 0.0005) / 1000;
}
