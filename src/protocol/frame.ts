/**
 * Frame layout (all integers big-endian):
 *
 *   offset 0  u8   kind     1 = MSG (UTF-8 JSON control message), 2 = DATA (raw bytes of a transfer)
 *   offset 1  u32  id       request id (0 = the connection itself)
 *   offset 5  u32  length   payload length in bytes
 *   offset 9  ...  payload
 *
 * Each side begins the connection with the 8-byte PREAMBLE before its first frame.
 */

export const PROTOCOL_VERSION = 1;

/** `\x89 F R Y \r \n \x1a \n`: a non-ASCII first byte and line-ending bytes catch text and mangled streams. */
export const PREAMBLE: Uint8Array = Uint8Array.of(0x89, 0x46, 0x52, 0x59, 0x0d, 0x0a, 0x1a, 0x0a);

export const FrameKind = { MSG: 1, DATA: 2 } as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

export const HEADER_SIZE = 9;
export const MAX_ID = 0xffff_ffff;

export interface Limits {
  /** Largest MSG payload accepted. */
  maxMessage: number;
  /** Largest DATA payload accepted. */
  maxData: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = { maxMessage: 64 * 1024, maxData: 1024 * 1024 };

/** Encodes a frame header. The payload is written after it by the caller (no copy of large data). */
export function encodeHeader(kind: FrameKind, id: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  writeHeader(header, kind, id, length);
  return header;
}

/** Writes a frame header into the first HEADER_SIZE bytes of `target`. */
export function writeHeader(target: Buffer, kind: FrameKind, id: number, length: number): void {
  target[0] = kind;
  target.writeUInt32BE(id, 1);
  target.writeUInt32BE(length, 5);
}

/** Encodes a whole MSG frame: header and JSON body in one buffer. */
export function encodeMessage(id: number, message: object): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const frame = Buffer.allocUnsafe(HEADER_SIZE + body.length);
  frame[0] = FrameKind.MSG;
  frame.writeUInt32BE(id, 1);
  frame.writeUInt32BE(body.length, 5);
  body.copy(frame, HEADER_SIZE);
  return frame;
}

/** Encodes a DATA frame as [header, payload] so that the payload is not copied. */
export function encodeData(id: number, payload: Uint8Array): [Buffer, Uint8Array] {
  return [encodeHeader(FrameKind.DATA, id, payload.length), payload];
}
