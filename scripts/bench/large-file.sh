#!/usr/bin/env bash
# A/B helper for the large-file path: one file of SIZE_MIB (default 512) MiB, `ferry batch` up then down against
# a fresh `ferry serve`, all in /dev/shm; prints wall time, MB/s and client CPU (GNU time), the server's CPU (from
# /proc), and verifies the file by SHA-256. Compare two builds by running it alternately:
#   SERVER=/tmp/ferry-old CLIENT=/tmp/ferry-old scripts/bench/large-file.sh
#   SERVER=dist/ferry CLIENT=dist/ferry scripts/bench/large-file.sh
# CLIENT may be a command line, e.g. CLIENT="node --cpu-prof --import tsx src/main.ts" to profile the client.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/ab-lib.sh
SIZE_MIB=${SIZE_MIB:-512}
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$T/src/big"
rate() { awk -v s="$1" -v m="$SIZE_MIB" 'BEGIN { printf "%.0f MB/s", m * 1048576 / s / 1e6 }'; }
run() { # direction, ops
  local t0 t1 s e
  t0=$(ticks); s=$(date +%s.%N)
  /usr/bin/time -o "$T/time" -f "client CPU %U+%S s, max RSS %M KiB" $CLIENT batch - <<<"$(manifest "$2")" >/dev/null
  e=$(date +%s.%N); t1=$(ticks)
  local wall; wall=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }')
  echo "$1 $wall s wall, $(rate "$wall"), $(cat "$T/time"), server CPU $(( (t1 - t0) ))0 ms"
}
run up "{\"put\":\"$T/src/big\",\"to\":\"/big\"}"
run down "{\"get\":\"big\",\"to\":\"$T/down/big\"}"
[ "$(sha256sum <"$T/src/big")" = "$(sha256sum <"$T/down/big")" ] && echo "verified: ${SIZE_MIB} MiB up and down, SHA-256 equal"
