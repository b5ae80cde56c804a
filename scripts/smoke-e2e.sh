#!/usr/bin/env bash
# Runs every test file that starts the real ferry CLI (the ones using test/e2e/harness.ts, directly or
# through a helper) with FERRY_BIN set to the given command: the built executable, or scripts/ferry-deno.sh
# for Deno. The harness then gives the ferry children a PATH with no node or deno on it.
# Usage: scripts/smoke-e2e.sh /abs/path/to/ferry     (node is $NODE, else the node on PATH)
# Last line (from scripts/test.mjs): `N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: scripts/smoke-e2e.sh /path/to/ferry}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
[[ -x $bin ]] || { echo "smoke-e2e: $bin is not an executable file"; echo "0 passed, 1 failed"; exit 1; }
node=${NODE:-$(command -v node)}
mapfile -t files < <(grep -rlE --include='*.test.ts' 'e2e/harness|from .\./harness|e2e-helpers' test | grep -v '^test/build/' | sort)
echo "smoke-e2e: ${#files[@]} files against $bin"
FERRY_BIN=$bin exec "$node" scripts/test.mjs "${files[@]}"
