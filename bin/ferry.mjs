#!/usr/bin/env -S node --max-semi-space-size=1
// npm bin shim: runs the TypeScript source through tsx (the built single executable does not use this file), with
// the V8 flags of the executable (scripts/build.mjs, V8_FLAGS).
import { register } from 'tsx/esm/api';
register();
await import('../src/main.ts');
