#!/usr/bin/env bash
# Several ferry servers as one, on this machine, for you to try (npm run scaleout:demo):
#   PostgreSQL 15 (shared state)  +  Swift with s3api (shared files)  +  N x `ferry serve`  +  HAProxy (send-proxy-v2)
# all on 127.0.0.1, on ports the OS picks, all state in one temporary directory; Ctrl-C (or SIGTERM) stops every
# process it started, by PID, and removes the directory.
#
#   npm run scaleout:demo                 start, show how to connect, run until Ctrl-C
#   npm run scaleout:demo -- --check      start, sign up a user through the balancer, upload/list/RDLOG, kill one
#                                         server, do it again through the survivor, stop (exit 0 when all worked)
#   SERVERS=3 npm run scaleout:demo       three servers instead of two
#
# Needs root the first time (apt-get for Swift and HAProxy; PostgreSQL 15 is on the machine image). Runs the sources
# through tsx, or the executable FERRY_BIN names (FERRY_BIN=dist/ferry after npm run build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CHECK=0
[[ ${1:-} == --check ]] && CHECK=1
SERVERS=${SERVERS:-2}
[[ $SERVERS =~ ^[1-9]$ ]] || { echo "scaleout-demo: SERVERS must be 1 to 9" >&2; exit 2; }
if [[ -n ${FERRY_BIN:-} ]]; then FERRY=("$(realpath "$FERRY_BIN")"); else FERRY=(node --import tsx "$ROOT/src/main.ts"); fi

DIR=$(mktemp -d /tmp/ferry-scaleout-XXXXXX)
chmod 755 "$DIR"
PIDS=()
say() { printf '\033[1m%s\033[0m\n' "$*"; }

stop_all() {
  trap - EXIT INT TERM
  say "stopping"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  scripts/services/haproxy.sh stop "$DIR/haproxy" || true
  scripts/services/swift.sh stop "$DIR/swift" >/dev/null 2>&1 || true
  scripts/services/postgres.sh stop "$DIR/pg" || true
  rm -rf "$DIR"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

say "1. services (first time as root: apt-get)"
scripts/services/haproxy.sh install
scripts/services/swift.sh install
DB=$(scripts/services/postgres.sh start "$DIR/pg" | sed -n 's/^DATABASE_URL=//p')
echo "   PostgreSQL  $DB"
scripts/services/swift.sh start "$DIR/swift" >"$DIR/swift.env"
set -a
# shellcheck disable=SC1091
source "$DIR/swift.env"
set +a
node scripts/services/s3-bucket.mjs ferry-demo >/dev/null
echo "   object store $S3_ENDPOINT, bucket ferry-demo"

say "2. $SERVERS ferry servers sharing them"
PORTS=()
for i in $(seq "$SERVERS"); do
  "${FERRY[@]}" serve --host 127.0.0.1 --port 0 --data "$DIR/server$i" --db "$DB" --storage s3://ferry-demo/files \
    --s3-endpoint "$S3_ENDPOINT" --proxy-protocol 127.0.0.1/32 >"$DIR/server$i.log" 2>&1 &
  PIDS+=($!)
done
for i in $(seq "$SERVERS"); do
  for _ in $(seq 300); do grep -q '^fingerprint ' "$DIR/server$i.log" && break; kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null || { cat "$DIR/server$i.log"; exit 1; }; sleep 0.1; done
  port=$(sed -n 's/^listening on .*:\([0-9]*\) .*/\1/p' "$DIR/server$i.log")
  [[ -n $port ]] || { echo "server $i did not start:"; cat "$DIR/server$i.log"; exit 1; }
  PORTS+=("$port")
  echo "   server $i   127.0.0.1:$port  $(sed -n 's/^fingerprint //p' "$DIR/server$i.log")  (log: $DIR/server$i.log)"
done
FP=$(sed -n 's/^fingerprint //p' "$DIR/server1.log")

say "3. HAProxy in front (TCP, send-proxy-v2, health checks)"
HA=$(scripts/services/haproxy.sh start "$DIR/haproxy" "${PORTS[@]}" | sed -n 's/^HAPROXY_PORT=//p')
sleep 1.2 # the first health checks
echo "   balancer    127.0.0.1:$HA  (log: $DIR/haproxy/haproxy.log)"

if ((CHECK == 0)); then
  say "Ready. In another terminal:"
  echo "   ferry connect 127.0.0.1:$HA --fingerprint $FP          (SIGNUP, then PUT, LIST, RDLOG...)"
  echo "   or open https://127.0.0.1:$HA/ in a browser: the page (its certificate's SHA-256 is in $DIR/server1.log, as a browser shows it)"
  echo "   ferry user add NAME --admin --db '$DB'"
  echo "   kill -9 ${PIDS[0]}    # server 1 dies: connect again, you land on another, with everything there"
  echo "Ctrl-C stops everything."
  while true; do sleep 3600; done
fi

say "4. check: sign up through the balancer, upload, list, RDLOG"
export FERRY_PASSWORD=demo-password-1
head -c 3000000 /dev/urandom >"$DIR/sample.bin"
run() { "${FERRY[@]}" connect "127.0.0.1:$HA" --user demo --fingerprint "$FP" "$@"; }
printf 'PUT %s sample.bin\nLIST\n' "$DIR/sample.bin" | run --signup | tee "$DIR/check1.out"
grep -q 'sha256 verified' "$DIR/check1.out" || { echo "scaleout-demo: the upload was not verified" >&2; exit 1; }
say "5. kill -9 server 1; the same through the balancer again"
kill -9 "${PIDS[0]}"
sleep 1.5 # two failed health checks take server 1 out
printf 'STAT sample.bin --sha256\nRDLOG\n' | run | tee "$DIR/check2.out"
want=$(sha256sum "$DIR/sample.bin" | cut -d' ' -f1)
grep -q "$want" "$DIR/check2.out" || { echo "scaleout-demo: the file's SHA-256 was not found after the failover" >&2; exit 1; }
grep -q "Signed up user 'demo'" "$DIR/check2.out" || { echo "scaleout-demo: RDLOG lacks the sign-up" >&2; exit 1; }
say "scaleout demo: ok"
