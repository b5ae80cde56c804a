/** The protocol's constants for the page (src/protocol/frame.ts is written for Node's Buffer; a test checks they agree). */
export const PROTOCOL_VERSION = 1;
export const PREAMBLE: Uint8Array = Uint8Array.of(0x89, 0x46, 0x52, 0x59, 0x0d, 0x0a, 0x1a, 0x0a);
export const HEADER_SIZE = 9;
