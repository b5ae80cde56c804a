/** ferry's version, shown by `--version` and sent in the handshake. Kept in step with package.json by a test. */
export const VERSION = '0.1.0';
