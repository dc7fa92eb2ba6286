#!/usr/bin/env bash
# A throw-away PostgreSQL server for the tests: Debian's PostgreSQL 15, data in a temp dir,
# listening on 127.0.0.1 on a free port, run as the `postgres` system user (it refuses root).
#
#   eval "$(bash scripts/postgres.sh start)"   # exports KGOPT_TEST_POSTGRES_URL and KGOPT_TEST_POSTGRES_DIR
#   bash scripts/postgres.sh stop "$KGOPT_TEST_POSTGRES_DIR"
#
# `start` installs the server from Debian's packages if it is missing (needs root and apt-get).
# The URL carries a password (scram-sha-256), so the tests can check it is never shown.
set -euo pipefail

find_bin() {
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

start() {
  if ! BIN=$(find_bin); then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
      echo "postgres.sh: PostgreSQL is not installed and cannot be installed here (need root and apt-get)" >&2
      exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 > /dev/null
    BIN=$(find_bin)
  fi
  DIR=$(mktemp -d /tmp/kgopt-postgres.XXXXXX)
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
  RUN=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$DIR"
    RUN=(runuser -u postgres --)
  fi
  printf '%s\n' "$PASSWORD" > "$DIR/pw"
  [ "$(id -u)" = 0 ] && chown postgres "$DIR/pw"
  "${RUN[@]}" "$BIN/initdb" -D "$DIR/data" -U kgopt --pwfile="$DIR/pw" -A scram-sha-256 -E UTF8 --locale=C.UTF-8 > "$DIR/initdb.log" 2>&1
  rm -f "$DIR/pw"
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $PORT -k $DIR -c max_connections=100" start > /dev/null
  echo "export KGOPT_TEST_POSTGRES_URL=postgresql://kgopt:$PASSWORD@127.0.0.1:$PORT/postgres"
  echo "export KGOPT_TEST_POSTGRES_DIR=$DIR"
}

stop() {
  DIR=${1:?usage: postgres.sh stop DIR}
  BIN=$(find_bin)
  RUN=()
  [ "$(id -u)" = 0 ] && RUN=(runuser -u postgres --)
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop > /dev/null 2>&1 || true
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: postgres.sh start | stop DIR" >&2; exit 2 ;;
esac
