#!/bin/sh
# ferry from the source on Deno 2 as one command, for FERRY_BIN: the end-to-end suite on Deno
# (deno task test:e2e). Deno is $DENO, else the npm package's. Shell built-ins only: it runs with no node
# (nor /usr/bin) on PATH.
root=$(cd "${0%/*}/.." && pwd)
deno=${DENO:-$root/node_modules/deno/deno}
[ -x "$deno" ] || deno=$root/node_modules/.bin/deno
# The V8 flags of the built executable (scripts/build.mjs, V8_FLAGS).
exec "$deno" run -A --v8-flags=--max-semi-space-size=1 "$root/src/main.ts" "$@"
