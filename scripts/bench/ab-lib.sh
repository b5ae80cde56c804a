# Shared by the A/B helpers (small-files.sh, large-file.sh): a throwaway user and `ferry serve` in /dev/shm.
# Sets T (work dir), port, fp, spid; defines manifest() (a batch manifest around its ops) and ticks() (server CPU).
SERVER=${SERVER:-dist/ferry}
CLIENT=${CLIENT:-$SERVER}
spid=
T=$(mktemp -d /dev/shm/ferry-ab-XXXXXX)
trap 'kill "$spid" 2>/dev/null || true; rm -rf "$T"' EXIT
mkdir -p "$T/home" "$T/down" "$T/src"
export FERRY_HOME=$T/home NO_COLOR=1 FERRY_PASSWORD=ab-bench
$CLIENT user add bench --data "$T/data" >/dev/null
port=$(node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
$SERVER serve --host 127.0.0.1 --port "$port" --data "$T/data" ${SERVE_ARGS:-} >"$T/serve.log" 2>&1 &
spid=$!
for _ in $(seq 100); do grep -q fingerprint "$T/serve.log" && break; sleep 0.1; done
fp=$(grep -o 'SHA256:[^ ]*' "$T/serve.log" | head -1)
manifest() { echo "{\"server\":\"127.0.0.1:$port\",\"fingerprint\":\"$fp\",\"user\":\"bench\",\"password\":\"\${FERRY_PASSWORD}\",\"concurrency\":${CONC:-8},\"retries\":0,\"ops\":[$1]}"; }
rss() { grep -E "VmHWM" /proc/$spid/status | tr -s " "; }
ticks() { awk '{print $14 + $15}' "/proc/$spid/stat"; }
# batch_timed LABEL OP [rss]: one `ferry batch` of the op OP (JSON), timed: wall and client CPU (GNU time), then the
# server's CPU during it (and its peak RSS with a third argument).
batch_timed() {
  local t0 t1
  t0=$(ticks)
  /usr/bin/time -f "$1 %e s wall, client CPU %U+%S s" $CLIENT batch - <<<"$(manifest "$2")" >/dev/null
  t1=$(ticks)
  echo "     server CPU $(( (t1 - t0) ))0 ms${3:+, server $(rss)}"
}
