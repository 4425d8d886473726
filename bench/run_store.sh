#!/usr/bin/env bash
# The object-store benchmark of the TypeScript API, on Node, Deno and Bun, against Ray measured
# on this machine. One command:
#
#   bash bench/run_store.sh            # full: REPEAT (default 3) runs per runtime, RAY_REPEAT
#                                      # (default 2) passes of Ray's workloads (~30 min)
#   bash bench/run_store.sh --quick    # CI smoke: one short run per runtime, no Ray (< 30 s)
#
# Prints a Markdown table per runtime (workload | ours | Ray | ratio) with the machine and date,
# and writes bench/results/<date>-store.json (<date>-store-quick.json with --quick).
# Ray (bench/setup_ray.sh installs it into .tools/ray-venv) is measured by bench/ray_bench.py;
# its result, bench/results/ray-<date>.json, is reused for a day (RAY_FRESH=1 re-measures).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "usage: bash bench/run_store.sh [--quick]" >&2; exit 2 ;;
  esac
done
repeat="${REPEAT:-$([ "$quick" = 1 ] && echo 1 || echo 3)}"
flag=$([ "$quick" = 1 ] && echo --quick || true)
date="$(date -u +%Y-%m-%d)"
results="$root/bench/results"
mkdir -p "$results"
work="$(mktemp -d)"
# The raw runs are kept if anything below fails, so a long run is never lost.
trap 'echo "raw runs kept in $work" >&2' ERR

load() { cut -d' ' -f1-3 /proc/loadavg; }
load_before="$(load)"

# The library changes while a long run goes on (others work in this checkout), so every run
# uses one snapshot of it: mod.ts, lib/, the bench and libobjstore.so, copied now.
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain -- mod.ts lib zig/src zig/include 2>/dev/null | wc -l)"
snap="$work/snapshot"
mkdir -p "$snap/bench" "$snap/zig/zig-out/lib"
cp -r mod.ts lib package.json deno.json "$snap/"
cp bench/store_bench.ts "$snap/bench/"
cp "$OBJSTORE_LIB" "$snap/zig/zig-out/lib/"
ln -s "$root/node_modules" "$snap/node_modules"
export OBJSTORE_LIB="$snap/zig/zig-out/lib/libobjstore.so"
echo "== measuring commit $commit ($dirty changed library files not committed), snapshot in $snap" >&2

runs=()
for i in $(seq 1 "$repeat"); do
  for runtime in node deno bun; do
    out="$work/$runtime-$i.json"
    case "$runtime" in
      node) cmd=(node --expose-gc "$snap/bench/store_bench.ts" $flag) ;;
      deno) cmd=(deno run -A --v8-flags=--expose-gc "$snap/bench/store_bench.ts" $flag) ;;
      bun) cmd=(bun "$snap/bench/store_bench.ts" $flag) ;;
    esac
    echo "== $runtime, run $i of $repeat: ${cmd[*]}" >&2
    if ! (cd "$snap" && "${cmd[@]}") >"$out" 2>"$work/$runtime-$i.err"; then
      tail -5 "$work/$runtime-$i.err" >&2
      printf '{"runtime":"%s","error":%s}\n' "$runtime" \
        "$(tail -3 "$work/$runtime-$i.err" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" >"$out"
    else
      sed 's/^/   /' "$work/$runtime-$i.err" >&2
    fi
    runs+=("$out")
  done
done

ray_json="-"
if [ "$quick" = 0 ]; then
  cached="$(find "$results" -maxdepth 1 -name 'ray-*.json' -mmin -1440 2>/dev/null | sort | tail -1)"
  if [ -z "${RAY_FRESH:-}" ] && [ -n "$cached" ] && grep -q '"measured": true' "$cached"; then
    echo "== Ray: reusing $cached (less than a day old; RAY_FRESH=1 re-measures)" >&2
    ray_json="$cached"
  else
    ray_json="$results/ray-$date.json"
    echo "== Ray: installing (once) and measuring; takes ~4 minutes per pass" >&2
    if ! bash bench/setup_ray.sh >"$work/ray-setup.log" 2>&1; then
      tail -5 "$work/ray-setup.log" >&2
      printf '{"measured": false, "error": %s}\n' \
        "$(tail -3 "$work/ray-setup.log" | python3 -c 'import json,sys; print(json.dumps("install failed: " + sys.stdin.read()))')" >"$ray_json"
    else
      .tools/ray-venv/bin/python bench/ray_bench.py --repeat "${RAY_REPEAT:-2}" >"$work/ray.json" 2> >(sed 's/^/   /' >&2) || true
      python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(json.dumps(d, indent=1))' \
        "$work/ray.json" >"$ray_json" || cp "$work/ray.json" "$ray_json"
    fi
  fi
fi

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
ram_gib="$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
cat >"$work/machine.json" <<EOF
{"date": "$date", "cpu": "$cpu", "cores": $(nproc), "ram_gib": $ram_gib, "kernel": "$(uname -r)",
 "load_before": "$load_before", "load_after": "$(load)", "repeat": $repeat,
 "commit": "$commit", "uncommitted_library_files": $dirty, "commit_at_end": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)", "quick": $([ "$quick" = 1 ] && echo true || echo false)}
EOF
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$work/machine.json" >"$work/machine1.json"

out="$results/$date-store$([ "$quick" = 1 ] && echo -quick || true).json"
python3 bench/report_store.py "$out" "$work/machine1.json" "$ray_json" "${runs[@]}"
echo "results: ${out#"$root"/}" >&2
rm -rf "$work"
