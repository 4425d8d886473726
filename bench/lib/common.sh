# Sourced by bench/run_all.sh: the project's tools on PATH, a scratch directory, progress on
# stderr, a snapshot of the library, one bench run with its failure recorded, the pools and Ray
# installed once, the machine described.
# shellcheck shell=bash
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# shellcheck source=../../scripts/env.sh
source scripts/env.sh

PISCINA_VERSION=5.3.2
TINYPOOL_VERSION=2.2.0
# The runtimes benchmarked (BENCH_RUNTIMES="node" for fewer: run_all.sh --quick's slow steps).
read -r -a RUNTIMES <<< "${BENCH_RUNTIMES:-node deno bun}"
results="$root/bench/results"
mkdir -p "$results"
work="$(mktemp -d)"
bench_started=$SECONDS

# Progress: one line per step, with the minutes elapsed and the load average.
progress() {
  printf '[%3dm%02ds load %s] %s\n' $(((SECONDS - bench_started) / 60)) $(((SECONDS - bench_started) % 60)) \
    "$(cut -d' ' -f1 /proc/loadavg)" "$*" | tee -a "$work/progress.log" >&2
}

# How each runtime starts a TypeScript file (GC exposed: the store bench unpins views with it).
runtime_cmd() { # runtime → the command words, in the array `cmd`
  case "$1" in
    node) cmd=(node --expose-gc) ;;
    deno) cmd=(deno run -A --v8-flags=--expose-gc) ;;
    bun) cmd=(bun) ;;
  esac
}

# The library changes while a long run goes on (others work in this checkout), so every run uses
# one snapshot of it, taken now: mod.ts, lib/, bench/ and libobjstore.so. Sets $snap.
snapshot_library() {
  snap="$work/snapshot"
  mkdir -p "$snap/zig/zig-out/lib" "$snap/.tools"
  cp -r mod.ts lib bench package.json deno.json "$snap/"
  rm -rf "$snap/bench/results"
  cp "$OBJSTORE_LIB" "$snap/zig/zig-out/lib/"
  ln -s "$root/node_modules" "$snap/node_modules"
  ln -s "$root/.tools/bench-node" "$snap/.tools/bench-node"
  export OBJSTORE_LIB="$snap/zig/zig-out/lib/libobjstore.so"
  lib_commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  lib_dirty="$(git status --porcelain -- mod.ts lib zig/src zig/include 2>/dev/null | wc -l | tr -d ' ')"
}

# Runs one benchmark (stdout: its JSON line) with a time limit, its progress indented on stderr;
# on failure writes {"runtime", "error"} instead, and counts it in $failures.
failures=0
run_bench() { # label runtime out seconds cmd...
  local label="$1" runtime="$2" out="$3" limit="$4"
  shift 4
  progress "$label on $runtime"
  # Its progress lines are shown as they come (indented, cut to 220 columns) and kept in $out.err.
  if (cd "${snap:-$root}" && timeout "$limit" "$@") >"$out" 2> >(tee "$out.err" | sed -u 's/^\(.\{0,216\}\).*/    \1/' >&2); then
    :
  else
    local rc=$?
    failures=$((failures + 1))
    sleep 0.5 # the tee behind the process substitution finishes writing $out.err
    progress "FAILED ($([ $rc = 124 ] && echo "timed out after ${limit} s" || echo "exit $rc")): $label on $runtime"
    python3 -c 'import json,sys; print(json.dumps({"runtime": sys.argv[1], "error": "exit %s: %s" % (sys.argv[2], open(sys.argv[3]).read()[-600:])}))' \
      "$runtime" "$rc" "$out.err" >"$out"
  fi
}

# piscina and tinypool, pinned, into .tools/bench-node/ (not the project's package.json).
install_pools() {
  local pools="$root/.tools/bench-node"
  have() { [ "$(node -p "require('$pools/node_modules/$1/package.json').version" 2>/dev/null)" = "$2" ]; }
  if ! have piscina "$PISCINA_VERSION" || ! have tinypool "$TINYPOOL_VERSION"; then
    progress "installing piscina@$PISCINA_VERSION tinypool@$TINYPOOL_VERSION into .tools/bench-node"
    mkdir -p "$pools"
    [ -f "$pools/package.json" ] || echo '{"name": "objstore-bench-node", "private": true, "type": "module"}' >"$pools/package.json"
    npm install --prefix "$pools" --save-exact --no-audit --no-fund \
      "piscina@$PISCINA_VERSION" "tinypool@$TINYPOOL_VERSION" >"$work/npm.log" 2>&1 || { tail -5 "$work/npm.log" >&2; return 1; }
  fi
}

# Ray (RAY_VERSION, default 2.60.0) and numpy from PyPI into .tools/ray-venv, once.
install_ray() {
  progress "Ray: bench/setup_ray.sh (installs into .tools/ray-venv once; several minutes the first time)"
  bash "$root/bench/setup_ray.sh"
}

# The machine, the date and the load, as JSON.
machine_json() { # load_before started quick repeat → stdout
  (cd "$work" && python3 - "$@" "$lib_commit" "$lib_dirty") <<'PY'
import json, os, platform, subprocess, sys
load_before, started, quick, repeat, commit, dirty = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
loads = []
if os.path.exists("progress.log"):
    loads = [float(l.split("load ", 1)[1].split("]")[0]) for l in open("progress.log") if l.startswith("[") and "load " in l]
try:
    virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True).stdout.strip()
except OSError:
    virt = ""
if not virt or virt == "none":
    virt = "virtual machine" if "hypervisor" in open("/proc/cpuinfo").read() else "none"
def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        return None
print(json.dumps({
    "date": started, "host": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "ram_gib": round(mem / 1048576, 1),
    "kernel": platform.release(), "virtualization": virt, "load_before": load_before,
    "load_after": " ".join(open("/proc/loadavg").read().split()[:3]), "quick": quick == "1", "repeat": int(repeat),
    "load_1min_range": [min(loads), max(loads)] if loads else None,
    "library": {"commit": commit, "uncommitted_files": int(dirty)},
    "runtimes": {"node": version(["node", "--version"]), "deno": version(["deno", "--version"]), "bun": version(["bun", "--version"])},
}))
PY
}
