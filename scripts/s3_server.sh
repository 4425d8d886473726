#!/usr/bin/env bash
# A real S3-compatible server on loopback for the S3 spill tests: versitygw (Apache-2.0) with its
# posix backend, built from the Go module proxy into .tools/s3 (a clean clone works; reruns are
# cached). Progress goes to stderr; `start` prints only `export ...` lines on stdout.
#
#   scripts/s3_server.sh install          build .tools/s3/bin/versitygw (once)
#   eval "$(scripts/s3_server.sh start)"  install if needed, start on 127.0.0.1, create the bucket
#   scripts/s3_server.sh stop             stop it and remove its data
#   scripts/s3_server.sh status           exit 0 (and print the exports) if it is running
#   scripts/s3_server.sh env              print the exports of the running server
#
# Environment: S3_PORT (default: a free port), OBJSTORE_TEST_S3_BUCKET (default objstore-test),
# GO (default: go on PATH, else /usr/local/go/bin/go; needs Go >= 1.25).
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
ACCESS_KEY=objstoretest
SECRET_KEY=objstoretest-secret-key
REGION=us-east-1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools/s3"
bin="$tools/bin/versitygw"
stamp="$tools/bin/.versitygw-$VERSITYGW_VERSION"
state="$tools/run"          # pid file, port, data dir path, log
bucket="${OBJSTORE_TEST_S3_BUCKET:-objstore-test}"

log() { echo "s3_server: $*" >&2; }
die() { echo "s3_server: error: $*" >&2; exit 1; }

find_go() {
  local go="${GO:-}"
  if [ -z "$go" ]; then
    if command -v go >/dev/null 2>&1; then go=go
    elif [ -x /usr/local/go/bin/go ]; then go=/usr/local/go/bin/go
    else die "no Go toolchain found (set GO=/path/to/go; versitygw $VERSITYGW_VERSION needs Go >= 1.25)"
    fi
  fi
  local v
  v="$("$go" env GOVERSION 2>/dev/null)" || die "'$go' does not run"
  case "$v" in
    go1.2[5-9]*|go1.[3-9]*|go[2-9]*) ;;
    *) die "$go is $v; versitygw $VERSITYGW_VERSION needs Go >= 1.25 (set GO=...)" ;;
  esac
  echo "$go"
}

install() {
  if [ -x "$bin" ] && [ -f "$stamp" ]; then
    return 0
  fi
  local go t0
  go="$(find_go)"
  mkdir -p "$tools/bin"
  log "building versitygw $VERSITYGW_VERSION into $tools/bin (once: 1-2 min on 2 cores)"
  t0=$SECONDS
  # -trimpath and no DWARF (-w -s) keep the link short; CGO off: a static binary, no C toolchain;
  # -modcacherw: `rm -rf .tools` works (the module cache is read-only otherwise).
  GOBIN="$tools/bin" GOPATH="$tools/gopath" GOMODCACHE="$tools/gopath/pkg/mod" \
    GOCACHE="$tools/gocache" GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0 \
    "$go" install -trimpath \
      -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" \
      "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2 \
    || die "go install github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION failed"
  rm -f "$tools/bin"/.versitygw-*
  touch "$stamp"
  log "built $bin in $((SECONDS - t0)) s"
}

running_pid() {
  local pid
  [ -f "$state/pid" ] || return 1
  pid="$(cat "$state/pid")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: it must still be our binary.
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$bin" ] || return 1
  echo "$pid"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

print_env() {
  local port
  port="$(cat "$state/port")"
  echo "export OBJSTORE_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
  echo "export OBJSTORE_TEST_S3_BUCKET=$(cat "$state/bucket")"
  echo "export AWS_ACCESS_KEY_ID=$ACCESS_KEY"
  echo "export AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
  echo "export AWS_REGION=$REGION"
}

# An answer of any kind from the HTTP server (403 for an unsigned request) means it is up.
answers() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null | grep -qv '^000$'; }

# A real, SigV4-signed CreateBucket (curl >= 7.75). 409 (already owned by you) is fine.
create_bucket() {
  local code
  code="$(curl -s -o "$state/create_bucket.xml" -w '%{http_code}' -m 10 -X PUT \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "http://127.0.0.1:$1/$bucket")" || true
  case "$code" in
    200|409) return 0 ;;
    *) log "CreateBucket answered HTTP $code:"; cat "$state/create_bucket.xml" >&2 2>/dev/null; echo >&2; return 1 ;;
  esac
}

start() {
  command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
  install
  if running_pid >/dev/null; then
    log "already running (pid $(cat "$state/pid"), port $(cat "$state/port"))"
    create_bucket "$(cat "$state/port")" || die "CreateBucket $bucket failed"
    echo "$bucket" > "$state/bucket"
    print_env
    return 0
  fi
  stop_quiet
  local attempt
  # A free port found by binding port 0 can be taken before versitygw binds it: try another.
  for attempt in 1 2 3; do
    launch && return 0
    [ -z "${S3_PORT:-}" ] || break
  done
  die "versitygw did not start (log: $state/log)"
}

# One try at starting the server; on failure, cleans up after itself and returns 1.
launch() {
  mkdir -p "$state"
  local data port pid i
  data="$(mktemp -d "${TMPDIR:-/tmp}/objstore-s3.XXXXXX")"
  # Sidecar metadata: no user xattrs needed on the data dir's filesystem.
  mkdir -p "$data/buckets" "$data/sidecar"
  port="${S3_PORT:-$(free_port)}"
  echo "$data" > "$state/data"
  echo "$port" > "$state/port"
  echo "$bucket" > "$state/bucket"
  log "starting versitygw on 127.0.0.1:$port, data in $data, log in $state/log"
  ROOT_ACCESS_KEY_ID="$ACCESS_KEY" ROOT_SECRET_ACCESS_KEY="$SECRET_KEY" \
    setsid "$bin" --port "127.0.0.1:$port" --region "$REGION" --quiet \
      posix --sidecar "$data/sidecar" "$data/buckets" \
      </dev/null >"$state/log" 2>&1 &
  pid=$!
  echo "$pid" > "$state/pid"
  for i in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 5 "$state/log" >&2 || true
      log "versitygw exited at start (port $port in use?)"
      stop_quiet
      return 1
    fi
    if answers "$port"; then break; fi
    sleep 0.1
  done
  if ! answers "$port"; then
    log "versitygw did not answer on 127.0.0.1:$port within 10 s"; stop_quiet; return 1
  fi
  if ! create_bucket "$port"; then
    log "CreateBucket $bucket failed"; stop_quiet; return 1
  fi
  log "up (pid $pid), bucket $bucket"
  print_env
}

stop_quiet() {
  local pid i
  if pid="$(running_pid)"; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    log "stopped pid $pid"
  fi
  if [ -f "$state/data" ]; then
    local data
    data="$(cat "$state/data")"
    case "$data" in
      */objstore-s3.*) rm -rf "$data" ;;
    esac
  fi
  rm -f "$state/pid" "$state/data" "$state/port" "$state/bucket"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_quiet ;;
  status) if pid="$(running_pid)"; then log "running (pid $pid, port $(cat "$state/port"))"; print_env; else log "not running"; exit 1; fi ;;
  env) running_pid >/dev/null || die "not running"; print_env ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
