#!/usr/bin/env bash
# A Redis server on loopback for the cluster tests: Debian's redis-server (installed with
# apt-get when missing), a free port, a random password, no persistence unless asked, its files
# in a fresh temporary folder. `start` prints only `export ...` lines on stdout.
#
#   eval "$(scripts/redis_server.sh start)"   start; exports OBJSTORE_TEST_REDIS=redis://:PASSWORD@127.0.0.1:PORT
#   scripts/redis_server.sh stop DIR          stop the server whose folder is DIR and remove it
#                                             (OBJSTORE_TEST_REDIS_DIR, exported by start)
# Environment: REDIS_APPENDONLY=yes starts it with an append-only file (restart tests);
# REDIS_BIND=ADDRESS listens there instead of 127.0.0.1 (a test network's gateway).
set -euo pipefail

die() { echo "redis_server: error: $*" >&2; exit 1; }

install() {
  command -v redis-server >/dev/null 2>&1 && return 0
  echo "redis_server: installing Debian's redis-server (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null 2>&1 ||
    die "cannot install redis-server: run 'apt-get install redis-server'"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  install
  local dir port password
  dir="$(mktemp -d -t objstore-redis-XXXXXX)"
  chmod 700 "$dir"
  port="$(free_port)"
  password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  # The password goes in a config file, not on the command line (ps shows arguments).
  cat > "$dir/redis.conf" <<CONF
bind ${REDIS_BIND:-127.0.0.1}
port $port
requirepass $password
dir $dir
save ""
appendonly ${REDIS_APPENDONLY:-no}
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
CONF
  chmod 600 "$dir/redis.conf"
  redis-server "$dir/redis.conf" >/dev/null || die "redis-server did not start (see $dir/redis.log)"
  for _ in $(seq 1 100); do
    if REDISCLI_AUTH="$password" redis-cli -h "${REDIS_BIND:-127.0.0.1}" -p "$port" ping 2>/dev/null | grep -q PONG; then
      echo "export OBJSTORE_TEST_REDIS='redis://:$password@${REDIS_BIND:-127.0.0.1}:$port'"
      echo "export OBJSTORE_TEST_REDIS_DIR='$dir'"
      return 0
    fi
    sleep 0.05
  done
  die "redis-server on port $port did not answer (see $dir/redis.log)"
}

stop() {
  local dir="${1:-${OBJSTORE_TEST_REDIS_DIR:-}}"
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  if [ -f "$dir/redis.pid" ]; then
    local pid
    pid="$(cat "$dir/redis.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 install | start | stop [DIR]" >&2; exit 2 ;;
esac
