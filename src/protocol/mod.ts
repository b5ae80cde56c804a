/**
 * The wire protocol: frames, the frame decoder and the control messages. Pure: bytes in, messages out, no I/O.
 * Errors (`FerryError`) and the listing entry (`Entry`) are in the base tier, `src/core/`.
 */
export * from './frame.ts';
export * from './decoder.ts';
export * from './messages.ts';
export * from './results.ts';
