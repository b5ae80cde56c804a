#!/usr/bin/env bash
# HAProxy (Debian's 2.6) as a TCP load balancer on 127.0.0.1 for tests and demos: a port the OS picks, in front of
# the given backend ports on 127.0.0.1, sending each connection's real address in a PROXY v2 header (its health
# checks too: `check-send-proxy`), in the foreground of its own session, all state in DIR, stopped by PID.
#
#   scripts/services/haproxy.sh install                 apt-get haproxy (root; ~5 s)
#   scripts/services/haproxy.sh start DIR PORT [PORT...] write DIR/haproxy.cfg, start, wait until it listens; prints the line below
#   scripts/services/haproxy.sh env DIR                 HAPROXY_PORT=...
#   scripts/services/haproxy.sh stop DIR                SIGTERM to the PID it recorded (SIGKILL after 5 s)
#
# Pitfalls met: health checks begin before the backends are up (expect DOWN then UP in DIR/haproxy.log, ~1 s);
# transfers need long client/server timeouts (1 h idle here); a backend behind `send-proxy-v2` must read the header;
# a browser's connections must all reach one server (the page's links): they go to a backend that sticks by address.
set -euo pipefail
cmd=${1:-}
DIR=${2:-}
die() { echo "haproxy.sh: $*" >&2; exit 1; }

# One `server` line per backend port, s1, s2, ...; with a backend name, each tracks that backend's health check of it.
server_lines() {
  local track=$1 i=1 p
  shift
  for p in "$@"; do
    [[ "$p" =~ ^[0-9]+$ ]] || die "not a port: $p"
    echo "    server s$i 127.0.0.1:$p${track:+ track $track/s$i}"
    i=$((i + 1))
  done
}

start() {
  shift 2
  [ $# -ge 1 ] || die "usage: $0 start DIR PORT [PORT...]"
  command -v haproxy >/dev/null || die "haproxy is not installed: $0 install"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  [ -f "$DIR/haproxy.pid" ] && kill -0 "$(cat "$DIR/haproxy.pid")" 2>/dev/null && die "already running in $DIR (pid $(cat "$DIR/haproxy.pid"))"
  local port
  port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  {
    echo "global"
    echo "    log stdout format raw local0 info"
    echo "    maxconn 2000"
    echo "    stats socket $DIR/admin.sock mode 600 level admin"
    echo "defaults"
    echo "    mode tcp"
    echo "    log global"
    echo "    option tcplog"
    echo "    option dontlognull"
    echo "    timeout connect 2s"
    echo "    timeout client 1h"
    echo "    timeout server 1h"
    echo "    option redispatch"
    echo "frontend ferry_in"
    echo "    bind 127.0.0.1:$port"
    # The ClientHello tells a ferry client (ALPN ferry/1, or none) from a browser (http/1.1, h2): TLS stays whole.
    echo "    tcp-request inspect-delay 5s"
    echo "    tcp-request content accept if { req.ssl_hello_type 1 }"
    echo "    use_backend ferry_servers if { req.ssl_alpn ferry/1 } || !{ req.ssl_alpn -m found }"
    echo "    default_backend ferry_web"
    echo "backend ferry_servers"
    echo "    balance leastconn"
    echo "    default-server check inter 500ms fall 2 rise 1 send-proxy-v2 check-send-proxy"
    server_lines "" "$@"
    # A browser's connections (the page, its WebSocket, its upload and download links) must reach one server: a link
    # is served by the server whose session made it. They stick by the client's address (to another server when
    # that one is down).
    echo "backend ferry_web"
    echo "    balance leastconn"
    echo "    stick-table type ip size 100k expire 1h"
    echo "    stick on src"
    echo "    default-server send-proxy-v2"
    server_lines ferry_servers "$@"
  } >"$DIR/haproxy.cfg"
  echo "$port" >"$DIR/port"
  haproxy -c -q -f "$DIR/haproxy.cfg" || die "configuration refused (see $DIR/haproxy.cfg)"
  setsid haproxy -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 </dev/null &
  echo $! >"$DIR/haproxy.pid"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { env_lines; return 0; }
    kill -0 "$(cat "$DIR/haproxy.pid")" 2>/dev/null || die "haproxy exited: $(tail -3 "$DIR/haproxy.log")"
    sleep 0.1
  done
  die "haproxy did not listen on 127.0.0.1:$port within 10 s"
}

env_lines() { echo "HAPROXY_PORT=$(cat "$DIR/port")"; }

stop() {
  [ -f "$DIR/haproxy.pid" ] || return 0
  local pid
  pid=$(cat "$DIR/haproxy.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$DIR/haproxy.pid"
}

case "$cmd" in
  install)
    [ "$(id -u)" = 0 ] || die "install needs root"
    command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null; } ;;
  start) [ -n "$DIR" ] || die "usage: $0 start DIR PORT [PORT...]"; start "$@" ;;
  env) [ -n "$DIR" ] || die "usage: $0 env DIR"; env_lines ;;
  stop) [ -n "$DIR" ] || die "usage: $0 stop DIR"; stop ;;
  *) die "usage: $0 install | start DIR PORT [PORT...] | env DIR | stop DIR" ;;
esac
