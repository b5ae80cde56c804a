#!/usr/bin/env bash
# A/B helper for a real tree (the regular files of /usr/include, or /usr/share/doc where that is nearly empty:
# thousands of files of mixed sizes in hundreds of folders), `ferry batch` up then down against a fresh
# `ferry serve`, all in /dev/shm; prints wall time and client CPU (GNU time) and the server's CPU (from /proc) for
# each direction, and verifies the tree. Compare two builds by running it alternately:
#   SERVER=/tmp/ferry-old CLIENT=/tmp/ferry-old scripts/bench/tree.sh
#   SERVER=dist/ferry CLIENT=dist/ferry scripts/bench/tree.sh
# CONC sets the batch concurrency (default: ferry's own, 16).
set -euo pipefail
cd "$(dirname "$0")/../.."
CONC=${CONC:-16}
source scripts/bench/ab-lib.sh
from=/usr/include
[ "$(find /usr/include -type f | wc -l)" -ge 2000 ] || from=/usr/share/doc
(cd "$from" && find . -type d -print0 | (cd "$T/src" && mkdir -p tree && cd tree && xargs -0 mkdir -p))
(cd "$from" && find . -type f -print0 | xargs -0 cp --parents -t "$T/src/tree")
echo "tree: $(find "$T/src/tree" -type f | wc -l) files, $(find "$T/src/tree" -type d | wc -l) folders, $(du -sm "$T/src/tree" | cut -f1) MB, from $from"
batch_timed "up  " "{\"put\":\"$T/src/tree\",\"to\":\"/\"}" rss
batch_timed down "{\"get\":\"tree\",\"to\":\"$T/down/\"}" rss
diff -r "$T/src/tree" "$T/down/tree" && echo "verified: the tree up and down, byte for byte"
