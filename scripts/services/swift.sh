#!/usr/bin/env bash
# A private S3-compatible object store for tests and benchmarks: OpenStack Swift from Debian's packages, one node,
# with its s3api and tempauth middleware, every server bound to 127.0.0.1 on ports the OS picks, all state in one
# directory, stopped by PID. Nothing of the system's own Swift (services, /srv) is touched.
#
#   scripts/services/swift.sh install        apt-get the packages (root; ~35 s on a fresh machine)
#   scripts/services/swift.sh start DIR      configure and start in DIR (a fresh store); prints the env lines below
#   scripts/services/swift.sh env DIR        S3_ENDPOINT=... AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=...
#   scripts/services/swift.sh stop DIR       stop every process started in DIR (by the PIDs it recorded)
#
# S3 credentials are tempauth's: access key "test:tester", secret "testing"; path-style addressing.
# Pitfalls met (see docs/storage.md): the hash prefix/suffix always come from /etc/swift/swift.conf; Swift's
# servers call setsid(), so they are stopped by their PID files; the Debian scripts need /usr/bin/python3 (not a
# pyenv python3 earlier on PATH); without memcached tempauth is twice as slow and logs errors.
set -euo pipefail
PY=/usr/bin/python3
cmd=${1:-}
DIR=${2:-}

die() { echo "swift.sh: $*" >&2; exit 1; }

install_pkgs() {
  [ "$(id -u)" = 0 ] || die "install needs root"
  if [ ! -x /usr/bin/swift-proxy-server ] || ! command -v memcached >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      swift swift-proxy swift-object swift-container swift-account python3-swift memcached curl >/dev/null
  fi
  if [ ! -s /etc/swift/swift.conf ]; then
    mkdir -p /etc/swift
    printf '[swift-hash]\nswift_hash_path_suffix = ferry\nswift_hash_path_prefix = ferry\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n' >/etc/swift/swift.conf
  fi
}

# Free TCP ports on 127.0.0.1, chosen by the OS (bound and released at once; the servers bind them a moment later).
free_ports() {
  $PY - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(('127.0.0.1', 0)); socks.append(s)
print(' '.join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
EOF
}

server_conf() { # name port
  cat >"$DIR/etc/$1-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $2
workers = 0
user = $(id -un)
swift_dir = $DIR/etc
devices = $DIR/node
mount_check = false
disable_fallocate = true
fallocate_reserve = 0
log_level = WARNING
log_name = $1-server

[pipeline:main]
pipeline = $1-server

[app:$1-server]
use = egg:swift#$1
EOF
}

configure() {
  read -r OBJ CONT ACC PROXY MEMC <<<"$(free_ports 5)"
  mkdir -p "$DIR/etc" "$DIR/run" "$DIR/log" "$DIR/node/d1"
  cp /etc/swift/mime.types "$DIR/etc/" 2>/dev/null || true
  # Rings: 2^8 partitions, one replica, one device each (one python process instead of nine ring-builder calls).
  $PY - "$DIR/etc" "$OBJ" "$CONT" "$ACC" <<'EOF'
import sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for name, port in zip(('object', 'container', 'account'), map(int, sys.argv[2:5])):
    b = RingBuilder(8, 1, 1)
    b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port, 'replication_ip': '127.0.0.1',
               'replication_port': port, 'device': 'd1', 'weight': 100, 'meta': ''})
    b.rebalance()
    b.save('%s/%s.builder' % (etc, name))
    b.get_ring().save('%s/%s.ring.gz' % (etc, name))
EOF
  server_conf account "$ACC"
  server_conf container "$CONT"
  server_conf object "$OBJ"
  cat >"$DIR/etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PROXY
workers = 0
user = $(id -un)
swift_dir = $DIR/etc
log_level = WARNING
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
node_timeout = 30
conn_timeout = 2
recoverable_node_timeout = 30
allow_account_management = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1
max_upload_part_num = 10000
s3_acl = false
check_bucket_owner = false
allow_multipart_uploads = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMC

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
max_manifest_segments = 10000
max_manifest_size = 16777216
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
[filter:symlink]
use = egg:swift#symlink
EOF
  printf 'S3_ENDPOINT=http://127.0.0.1:%s\nAWS_ACCESS_KEY_ID=test:tester\nAWS_SECRET_ACCESS_KEY=testing\nAWS_REGION=us-east-1\n' "$PROXY" >"$DIR/env"
  echo "$MEMC" >"$DIR/memcached.port"
  echo "$PROXY $ACC $CONT $OBJ" >"$DIR/ports"
}

wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start() {
  [ -x /usr/bin/swift-proxy-server ] || die "Swift is not installed: run '$0 install' as root"
  [ ! -e "$DIR/run" ] || die "$DIR holds a store already (stop it and remove the directory first)"
  configure
  memcached -l 127.0.0.1 -p "$(cat "$DIR/memcached.port")" -U 0 -m 32 -c 256 -u "$(id -un)" >>"$DIR/log/memcached.log" 2>&1 </dev/null &
  echo $! >"$DIR/run/memcached.pid"
  for s in account container object proxy; do
    nohup $PY "/usr/bin/swift-$s-server" "$DIR/etc/$s-server.conf" -v >>"$DIR/log/$s.log" 2>&1 </dev/null &
    echo $! >"$DIR/run/$s.pid"
  done
  for p in $(cat "$DIR/ports"); do
    wait_port "$p" 60 || { stop; die "a Swift server did not come up on port $p (logs in $DIR/log)"; }
  done
  local proxy
  proxy=$(cut -d' ' -f1 "$DIR/ports")
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$proxy/healthcheck" 2>/dev/null && { cat "$DIR/env"; return 0; }
    sleep 0.1
  done
  stop
  die "the Swift proxy did not answer its health check (logs in $DIR/log)"
}

stop() {
  [ -d "$DIR/run" ] || return 0
  local f pid
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
  done
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

case "$cmd" in
  install) install_pkgs ;;
  start) [ -n "$DIR" ] || die "usage: $0 start DIR"; mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd); start ;;
  env) [ -n "$DIR" ] || die "usage: $0 env DIR"; cat "$DIR/env" ;;
  stop) [ -n "$DIR" ] || die "usage: $0 stop DIR"; stop ;;
  *) die "usage: $0 install | start DIR | env DIR | stop DIR" ;;
esac
