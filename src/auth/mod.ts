export * from './types.ts';
export * from './password.ts';
export * from './users.ts';
export * from './throttle.ts';
