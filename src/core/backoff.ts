/**
 * The delay before retry number `attempt` (1 for the first retry): exponential from `firstMs`, doubling per
 * attempt, capped at `capMs`, with "equal jitter" (between half and all of it), so that many clients or
 * servers that failed together do not retry in step. Used by batch retries and the webhook courier alike.
 *
 * @example
 * ```ts
 * backoff(1, { firstMs: 500, capMs: 60_000 });  // 250..500
 * backoff(20, { firstMs: 500, capMs: 60_000 }); // 30_000..60_000
 * ```
 */
export function backoff(attempt: number, options: { firstMs: number; capMs: number; random?: () => number }): number {
  const { firstMs, capMs, random = Math.random } = options;
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  const base = Math.min(capMs, firstMs * 2 ** exponent);
  return Math.round(base / 2 + random() * (base / 2));
}
