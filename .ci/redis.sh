#!/usr/bin/env bash
# Start a throwaway Redis on loopback (the Celery broker of the distributed test) and print "URL DIR".
# Installs Debian's redis-server when missing (as root); persistence off; stopped by `.ci/redis.sh stop DIR`.
set -euo pipefail
if [ "${1:-}" = "stop" ]; then
  kill "$(cat "$2/redis.pid")" 2>/dev/null || true
  exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
PORT="${KW_TEST_REDIS_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
DATA="$(mktemp -d /tmp/kw-redis.XXXXXX)"
redis-server --bind 127.0.0.1 --port "$PORT" --dir "$DATA" --save '' --appendonly no --daemonize yes \
  --pidfile "$DATA/redis.pid" --logfile "$DATA/redis.log" >/dev/null
for _ in $(seq 50); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
echo "redis://127.0.0.1:$PORT $DATA"
