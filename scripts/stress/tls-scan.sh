#!/usr/bin/env bash
# Scans a real `ferry serve` with sslscan (Debian package `sslscan`; installed with apt-get when missing and
# this runs as root): the server must offer only TLS 1.2+ (ferry offers 1.3 only), only AEAD suites, no
# compression, no renegotiation. Prints sslscan's summary and a verdict; exit 0 when the checks pass,
# 2 when no scanner could be had (skipped).
# Usage: scripts/stress/tls-scan.sh
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v sslscan >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y sslscan >/dev/null 2>&1 || true
  fi
fi
if ! command -v sslscan >/dev/null 2>&1; then
  echo "tls-scan: SKIPPED (no sslscan; apt-get install sslscan)"
  exit 2
fi

work=$(mktemp -d /tmp/ferry-tls-scan.XXXXXX)
out="$work/serve.log"
node --import tsx "$root/src/main.ts" serve --host 127.0.0.1 --port 0 --data "$work/data" >"$out" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 200); do
  port=$(sed -n 's/^listening on .*:\([0-9]*\) .*/\1/p' "$out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "tls-scan: the server did not start"; cat "$out"; exit 1; }

scan=$(sslscan --no-colour --show-sigs "127.0.0.1:$port" 2>&1)
echo "$scan" | sed -n '/SSL\/TLS Protocols/,/Issuer/p'
echo "$scan" | grep -E "^(Accepted|Preferred)" > "$work/suites"

fail=0
for old in 'SSLv2' 'SSLv3' 'TLSv1.0' 'TLSv1.1'; do
  echo "$scan" | grep -E "^$old +enabled" >/dev/null && { echo "tls-scan: FAIL: $old is enabled"; fail=1; }
done
echo "$scan" | grep -E "^TLSv1.3 +enabled" >/dev/null || { echo "tls-scan: FAIL: TLSv1.3 is not enabled"; fail=1; }
# Every accepted suite must be an AEAD (GCM, CHACHA20-POLY1305 or CCM).
while read -r line; do
  echo "$line" | grep -E "GCM|CHACHA20|POLY1305|CCM" >/dev/null || { echo "tls-scan: FAIL: non-AEAD suite: $line"; fail=1; }
done < "$work/suites"
# (TLS 1.3 has no compression; sslscan builds without zlib say so instead of testing.)
echo "$scan" | grep -Ei "Compression enabled" >/dev/null && { echo "tls-scan: FAIL: TLS compression enabled (CRIME)"; fail=1; }
echo "$scan" | grep -Ei "Insecure session renegotiation supported" >/dev/null && { echo "tls-scan: FAIL: insecure renegotiation"; fail=1; }
echo "tls-scan: $(wc -l < "$work/suites") suites accepted: $(awk '{print $2" "$5}' "$work/suites" | paste -sd, -)"
[ $fail = 0 ] && echo "tls-scan: OK: TLS 1.3 only, AEAD suites only" || echo "tls-scan: FAILED"
exit $fail
