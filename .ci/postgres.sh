#!/usr/bin/env bash
# Start a throwaway PostgreSQL on loopback for the `postgres` tests and print its URL (KW_TEST_POSTGRES_URL).
# Installs Debian's postgresql when missing (as root). The data directory is a new temporary one; the server
# runs as the `postgres` user (initdb refuses root) and is stopped by `.ci/postgres.sh stop DIR`.
set -euo pipefail
if [ "${1:-}" = "stop" ]; then
  su postgres -s /bin/sh -c "$(ls -d /usr/lib/postgresql/*/bin | tail -1)/pg_ctl -D '$2' -m fast stop" >/dev/null
  exit 0
fi
PORT="${KW_TEST_POSTGRES_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | tail -1)"
DATA="$(mktemp -d /tmp/kw-postgres.XXXXXX)"
chown postgres "$DATA"
su postgres -s /bin/sh -c "$BIN/initdb -D '$DATA' -U kw --auth=trust -E UTF8 >/dev/null"
su postgres -s /bin/sh -c "$BIN/pg_ctl -D '$DATA' -l '$DATA/server.log' -w -o \"-p $PORT -k '$DATA' -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null"
su postgres -s /bin/sh -c "$BIN/createdb -h 127.0.0.1 -p $PORT -U kw kw"
echo "postgresql://kw@127.0.0.1:$PORT/kw $DATA"
