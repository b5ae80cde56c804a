#!/usr/bin/env node
// npm bin shim: runs the TypeScript source through tsx (the built single executable does not use this file).
import { register } from 'tsx/esm/api';
register();
await import('../src/main.ts');
