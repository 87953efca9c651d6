#!/usr/bin/env bash
# A throwaway PostgreSQL server (Debian's `postgresql` package, 15 or newer) on 127.0.0.1 for
# development, tests and benchmarks: its own cluster in a temp dir, on a free port, run as an
# unprivileged user (PostgreSQL refuses to run as root; as root the script runs it as `postgres`,
# or `nobody` when that user does not exist).
#
#   scripts/postgres-local.sh start    start (or find running) and print the connection URL
#   scripts/postgres-local.sh stop     stop it and delete its data
#   scripts/postgres-local.sh status   say whether it runs, and its URL
#   scripts/postgres-local.sh url      print the URL of the running server (nothing else)
#
# Environment (all optional):
#   PG_HOME        where the cluster, its log and its URL live (default ${TMPDIR:-/tmp}/streamgate-postgres-<uid>)
#   PG_PORT        port (default: a free port, chosen at the first start of PG_HOME)
#   PG_BIN         directory of initdb/pg_ctl (default: the newest /usr/lib/postgresql/*/bin, else PATH)
#   PG_RUN_AS      user the server runs as when this script runs as root (default postgres, else nobody)
#   PG_SETTINGS    extra postgres settings, e.g. "-c max_connections=400" (default: max_connections=300)
#
# The server listens on 127.0.0.1 only and asks for a password (scram-sha-256): user `streamgate`,
# a random password generated at the first start and kept in PG_HOME (owner-only), database `streamgate`.
set -euo pipefail

PG_HOME="${PG_HOME:-${TMPDIR:-/tmp}/streamgate-postgres-$(id -u)}"
DATA="$PG_HOME/data"
URL_FILE="$PG_HOME/url"
PORT_FILE="$PG_HOME/port"
LOG="$PG_HOME/postgres.log"
SETTINGS="${PG_SETTINGS:--c max_connections=300}"

die() { echo "postgres-local: $*" >&2; exit 1; }

find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
  local newest=""
  for d in /usr/lib/postgresql/*/bin; do [[ -x "$d/initdb" ]] && newest="$d"; done
  if [[ -n "$newest" ]]; then echo "$newest"; return; fi
  local initdb
  initdb="$(command -v initdb 2>/dev/null)" || die "initdb not found: install Debian's postgresql package (apt-get install -y postgresql)"
  dirname "$(readlink -f "$initdb")"
}

BIN="$(find_bin)"

# Run a command as the server's user: ourselves, or PG_RUN_AS when we are root.
as_owner() {
  if [[ "$(id -u)" -ne 0 ]]; then "$@"; return; fi
  local user="${PG_RUN_AS:-}"
  if [[ -z "$user" ]]; then
    if id postgres >/dev/null 2>&1; then user=postgres; else user=nobody; fi
  fi
  if command -v runuser >/dev/null 2>&1; then runuser -u "$user" -- "$@"; else su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"; fi
}

owner_user() {
  if [[ "$(id -u)" -ne 0 ]]; then id -un; return; fi
  if [[ -n "${PG_RUN_AS:-}" ]]; then echo "$PG_RUN_AS"; elif id postgres >/dev/null 2>&1; then echo postgres; else echo nobody; fi
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

running() {
  [[ -f "$DATA/postmaster.pid" ]] || return 1
  as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
  if running; then cat "$URL_FILE"; return 0; fi
  mkdir -p "$PG_HOME"
  chmod 755 "$PG_HOME"
  local user port password
  user="$(owner_user)"
  if [[ ! -f "$DATA/PG_VERSION" ]]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    password="$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')"
    local pwfile="$PG_HOME/.pw"
    ( umask 077; printf '%s\n' "$password" >"$pwfile" )
    chown "$user" "$DATA" "$pwfile"
    chmod 700 "$DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U streamgate --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_HOME/initdb.log" 2>&1 \
      || { cat "$PG_HOME/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    port="${PG_PORT:-$(free_port)}"
    echo "$port" >"$PORT_FILE"
    ( umask 077; echo "postgres://streamgate:$password@127.0.0.1:$port/streamgate" >"$URL_FILE" )
  fi
  port="$(cat "$PORT_FILE")"
  touch "$LOG"; chown "$user" "$LOG"
  # Unix sockets in the data dir (not /var/run/postgresql, which may not exist or be writable).
  # shellcheck disable=SC2086
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$DATA -c fsync=on $SETTINGS" start >/dev/null \
    || { tail -n 30 "$LOG" >&2; die "server did not start"; }
  local pw
  pw="$(sed -E 's#^postgres://streamgate:([^@]*)@.*#\1#' "$URL_FILE")"
  if ! PGPASSWORD="$pw" "$BIN/psql" -w -h 127.0.0.1 -p "$port" -U streamgate -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'streamgate'" | grep -q 1; then
    PGPASSWORD="$pw" "$BIN/psql" -w -h 127.0.0.1 -p "$port" -U streamgate -d postgres -qc 'CREATE DATABASE streamgate' >/dev/null
  fi
  cat "$URL_FILE"
}

stop() {
  if running; then as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi
  rm -rf "$PG_HOME"
  echo "postgres-local: stopped, $PG_HOME removed" >&2
}

status() {
  if running; then echo "postgres-local: running on $(cat "$URL_FILE" | sed -E 's#//([^:]*):[^@]*@#//\1:***@#'), data in $DATA"; else echo "postgres-local: not running"; return 3; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) running || die "not running"; cat "$URL_FILE" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
