export * from './errors.ts';
export * from './frame.ts';
export * from './decoder.ts';
export * from './messages.ts';
