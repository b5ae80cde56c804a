#!/usr/bin/env bash
# A/B helper for the many-small-files path: 2,000 files of 4 KiB in 20 folders, `ferry batch` up then down
# against a fresh `ferry serve`, all in /dev/shm; prints wall time and client CPU (GNU time) and the server's
# CPU (from /proc) for each direction, and verifies the tree. Compare two builds by running it alternately:
#   SERVER=/tmp/ferry-old CLIENT=/tmp/ferry-old scripts/bench/small-files.sh
#   SERVER=dist/ferry CLIENT=dist/ferry scripts/bench/small-files.sh
# (copy dist/ferry aside after each `npm run build`). CONC sets the batch concurrency (default 8).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/ab-lib.sh
node -e '
const { mkdirSync, writeFileSync } = require("node:fs"); const { randomBytes } = require("node:crypto");
for (let d = 0; d < 20; d++) { mkdirSync(`${process.argv[1]}/src/tree/d${d}`, { recursive: true });
  for (let f = 0; f < 100; f++) writeFileSync(`${process.argv[1]}/src/tree/d${d}/f${f}`, randomBytes(4096)); }' "$T"
batch_timed "up  " "{\"put\":\"$T/src/tree\",\"to\":\"/\"}"
batch_timed down "{\"get\":\"tree\",\"to\":\"$T/down/\"}"
diff -r "$T/src/tree" "$T/down/tree" && echo "verified: 2,000 files up and down, byte for byte"
