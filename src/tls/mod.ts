/**
 * ferry's TLS identity: the server's key and self-signed certificate, made on first start, and the
 * `SHA256:...` fingerprints that clients pin.
 *
 * @example
 * ```ts
 * import { loadOrCreateIdentity, fingerprintFromHex } from './tls/mod.ts';
 * const id = await loadOrCreateIdentity(join(dataDir, 'tls'));
 * // client side, after the handshake:
 * const seen = fingerprintFromHex(socket.getPeerCertificate().fingerprint256);
 * ```
 */
export * from './fingerprint.ts';
export * from './identity.ts';
export * from './ca.ts';
