#!/usr/bin/env bash
# A private PostgreSQL 15 for tests and demos: its own cluster in DIR, bound to 127.0.0.1 on a port the OS picks,
# trust authentication on loopback only, a database `ferry`, stopped by the PID in its postmaster.pid. The system's
# own cluster (if any, on 5432) is never touched.
#
#   scripts/services/postgres.sh install      apt-get postgresql-15 (root; already on the node image)
#   scripts/services/postgres.sh start DIR    initdb on first use (~1 s), start, make the database; prints the line below
#   scripts/services/postgres.sh env DIR      DATABASE_URL=postgres://postgres@127.0.0.1:PORT/ferry
#   scripts/services/postgres.sh stop DIR     fast shutdown (pg_ctl, by the postmaster's PID)
#
# Pitfalls met: initdb and postgres refuse to run as root (run as the `postgres` user, so DIR's parents must be
# traversable by it: use /tmp, not /root); a private unix_socket_directories (not /var/run/postgresql); fsync is off
# (throwaway data only).
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:-}
DIR=${2:-}
die() { echo "postgres.sh: $*" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); else AS=(); fi

port_of() { sed -n 's/^port = //p' "$DIR/data/postgresql.conf" | tail -1; }

start() {
  [ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 is not installed: $0 install"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    "${AS[@]}" "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$DIR/initdb.log" 2>&1 ||
      die "initdb failed: $(tail -3 "$DIR/initdb.log")"
    mkdir -p "$DIR/run"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR/run"
    local port
    port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '$DIR/run'"
      echo "max_connections = 200"
      echo "shared_buffers = 64MB"
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
    } >>"$DIR/data/postgresql.conf"
  fi
  if ! "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 start >/dev/null || die "did not start: $(tail -3 "$DIR/postgres.log")"
  fi
  local port
  port=$(port_of)
  "${AS[@]}" "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'ferry'" postgres | grep -q 1 ||
    "${AS[@]}" "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U postgres ferry
  env_lines
}

env_lines() { echo "DATABASE_URL=postgres://postgres@127.0.0.1:$(port_of)/ferry"; }

stop() {
  [ -f "$DIR/data/postmaster.pid" ] || return 0
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w -t 30 stop >/dev/null
}

case "$cmd" in
  install)
    [ "$(id -u)" = 0 ] || die "install needs root"
    [ -x "$PGBIN/initdb" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null; } ;;
  start) [ -n "$DIR" ] || die "usage: $0 start DIR"; start ;;
  env) [ -n "$DIR" ] || die "usage: $0 env DIR"; env_lines ;;
  stop) [ -n "$DIR" ] || die "usage: $0 stop DIR"; stop ;;
  *) die "usage: $0 install | start DIR | env DIR | stop DIR" ;;
esac
