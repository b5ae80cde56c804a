import { createHmac, timingSafeEqual } from 'node:crypto';

/** Name of the header that carries the body's signature. */
export const SIGNATURE_HEADER = 'x-ferry-signature';
/** Name of the header that identifies one batch (kept across retries of that batch within one server run). */
export const DELIVERY_HEADER = 'x-ferry-delivery';

/**
 * The `x-ferry-signature` value for a body: `sha256=` and the hex HMAC-SHA256 of the exact body bytes,
 * keyed with the endpoint's secret.
 *
 * @example
 * ```ts
 * sign('{"events":[]}', 'secret'); // 'sha256=6c1f…'
 * ```
 */
export function sign(body: string | Uint8Array, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * What a receiver does: true when `signature` is the right one for `body`, compared in constant time.
 *
 * @example
 * ```ts
 * verify(rawBody, req.headers['x-ferry-signature'], process.env.HOOK_SECRET);
 * ```
 */
export function verify(body: string | Uint8Array, signature: string | string[] | undefined, secret: string): boolean {
  if (typeof signature !== 'string') return false;
  const want = Buffer.from(sign(body, secret));
  const got = Buffer.from(signature);
  return got.length === want.length && timingSafeEqual(got, want);
}
