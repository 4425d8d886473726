#!/usr/bin/env bash
# Remote tasks and actors: @objstore/core on Node, Deno and Bun against Ray measured on this
# machine, and against piscina and tinypool (thread pools) on the same runtime. One command:
#
#   bash bench/run_tasks.sh            # full: REPEAT (default 3) runs per runtime + Ray (~40 min)
#   bash bench/run_tasks.sh --quick    # CI smoke: one short run per runtime, no Ray (< 1 min)
#   PLACE=1 bash bench/run_tasks.sh --quick   # the same plus the pinned runs, shortened
#
# Each run is bench/tasks_bench.ts (ours, plus a bare pipe ping-pong floor) then
# bench/pool_bench.ts (piscina, tinypool), runtimes interleaved, with the kernel placing the
# processes; then (full mode) one run of each pinned to one vCPU and to two (taskset), since
# one-in-flight rates depend on that placement; Ray is bench/ray_tasks.py
# (installed by bench/setup_ray.sh into .tools/ray-venv), REPEAT times. Figures are medians over
# the runs of each run's mean, with the range. Prints a Markdown table per runtime (workload |
# ours | Ray | piscina | tinypool | ratio vs Ray | ratio vs piscina), where the time goes per op,
# the machine and date, and writes bench/results/<date>-tasks.json (-tasks-quick.json).
# The pools are installed, pinned, into .tools/bench-node/ (not the project's package.json).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

PISCINA_VERSION=5.3.2
TINYPOOL_VERSION=2.2.0

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "usage: bash bench/run_tasks.sh [--quick]" >&2; exit 2 ;;
  esac
done
repeat="${REPEAT:-$([ "$quick" = 1 ] && echo 1 || echo 3)}"
flag=$([ "$quick" = 1 ] && echo --quick || true)
date="$(date -u +%Y-%m-%d)"
results="$root/bench/results"
mkdir -p "$results"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

pools="$root/.tools/bench-node"
have() { [ "$(node -p "require('$pools/node_modules/$1/package.json').version" 2>/dev/null)" = "$2" ]; }
if ! have piscina "$PISCINA_VERSION" || ! have tinypool "$TINYPOOL_VERSION"; then
  echo "== installing piscina@$PISCINA_VERSION tinypool@$TINYPOOL_VERSION into .tools/bench-node" >&2
  mkdir -p "$pools"
  [ -f "$pools/package.json" ] || echo '{"name": "objstore-bench-node", "private": true, "type": "module"}' >"$pools/package.json"
  npm install --prefix "$pools" --save-exact --no-audit --no-fund \
    "piscina@$PISCINA_VERSION" "tinypool@$TINYPOOL_VERSION" >"$work/npm.log" 2>&1 || { tail -5 "$work/npm.log" >&2; exit 1; }
fi

load() { cut -d' ' -f1-3 /proc/loadavg; }
# The library measured: the commit, and whether lib/ or mod.ts had uncommitted changes.
git_rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git_dirty="$(git status --porcelain -- lib mod.ts 2>/dev/null | wc -l | tr -d ' ')"
load_before="$(load)"
started="$(date -u '+%Y-%m-%d %H:%M UTC')"

# Runs one bench; on failure records {"runtime", "error"} instead of its JSON line.
bench() { # name runtime out cmd...
  local name="$1" runtime="$2" out="$3"
  shift 3
  echo "== $name on $runtime: $*" >&2
  if timeout 900 "$@" >"$out" 2>"$out.err"; then
    sed 's/^/   /' "$out.err" >&2
  else
    local rc=$?
    sed 's/^/   /' "$out.err" | tail -8 >&2
    python3 -c 'import json,sys; print(json.dumps({"runtime": sys.argv[1], "error": "exit %s: %s" % (sys.argv[2], open(sys.argv[3]).read()[-600:])}))' \
      "$runtime" "$rc" "$out.err" >"$out"
  fi
}

tasks_runs=()
pool_runs=()
for i in $(seq 1 "$repeat"); do
  for runtime in node deno bun; do
    case "$runtime" in
      node) run=(node) ;;
      deno) run=(deno run -A) ;;
      bun) run=(bun) ;;
    esac
    bench "tasks_bench (run $i of $repeat)" "$runtime" "$work/tasks-$runtime-$i.json" "${run[@]}" bench/tasks_bench.ts $flag
    tasks_runs+=("$work/tasks-$runtime-$i.json")
    bench "pool_bench (run $i of $repeat)" "$runtime" "$work/pool-$runtime-$i.json" "${run[@]}" bench/pool_bench.ts $flag
    pool_runs+=("$work/pool-$runtime-$i.json")
  done
done

# Pinned runs (full mode): one-in-flight rates depend on whether the two sides share a vCPU, which
# the kernel decides differently from run to run; these place ours and the pools the same way.
place_runs=()
if [ "$quick" = 0 ] || [ -n "${PLACE:-}" ]; then
  for runtime in node deno bun; do
    case "$runtime" in
      node) run=(node) ;;
      deno) run=(deno run -A) ;;
      bun) run=(bun) ;;
    esac
    for placement in same split; do
      bench "tasks_bench --placement $placement" "$runtime" "$work/place-tasks-$runtime-$placement.json" "${run[@]}" bench/tasks_bench.ts $flag \
        --placement "$placement" --only pipe_pingpong_sync,single_client_tasks_sync,single_client_tasks_async,1_1_actor_calls_sync,1_1_actor_calls_async
      bench "pool_bench --placement $placement" "$runtime" "$work/place-pool-$runtime-$placement.json" "${run[@]}" bench/pool_bench.ts $flag \
        --placement "$placement" --workloads single_client_tasks_sync,single_client_tasks_async
      place_runs+=("$work/place-tasks-$runtime-$placement.json" "$work/place-pool-$runtime-$placement.json")
    done
  done
fi

ray_runs=()
if [ "$quick" = 0 ]; then
  echo "== Ray: installing (once) into .tools/ray-venv" >&2
  if ! bash bench/setup_ray.sh >"$work/ray-setup.log" 2>&1; then
    tail -5 "$work/ray-setup.log" >&2
    python3 -c 'import json,sys; print(json.dumps({"measured": False, "error": "install failed: " + open(sys.argv[1]).read()[-600:]}))' \
      "$work/ray-setup.log" >"$work/ray-1.json"
    ray_runs+=("$work/ray-1.json")
  else
    for i in $(seq 1 "$repeat"); do
      echo "== Ray, run $i of $repeat: bench/ray_tasks.py (Ray's timeit sleeps ${RAY_SLEEP:-10} s before each workload)" >&2
      .tools/ray-venv/bin/python bench/ray_tasks.py --sleep "${RAY_SLEEP:-10}" >"$work/ray-$i.json" 2> >(grep -v -e WARNING -e 'INFO worker' | sed 's/^/   /' >&2) || true
      ray_runs+=("$work/ray-$i.json")
    done
  fi
fi

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
ram_gib="$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
virt="$(systemd-detect-virt 2>/dev/null || (grep -q hypervisor /proc/cpuinfo && echo "virtual machine") || echo none)"
out="$results/$date-tasks$([ "$quick" = 1 ] && echo -quick || true).json"

python3 - "$out" "$started" "$cpu" "$(nproc)" "$ram_gib" "$(uname -r)" "$virt" "$load_before" "$(load)" "$repeat" "$quick" "$git_rev" "$git_dirty" \
  "${#tasks_runs[@]}" "${tasks_runs[@]}" "${#pool_runs[@]}" "${pool_runs[@]}" "${#ray_runs[@]}" "${ray_runs[@]}" \
  "${#place_runs[@]}" "${place_runs[@]}" <<'PY'
import json
import statistics
import sys

argv = sys.argv[1:]
out, started, cpu, cores, ram, kernel, virt, load_before, load_after, repeat, quick, git_rev, git_dirty = argv[:13]
rest = argv[13:]


def take(rest):
    n = int(rest[0])
    return rest[1 : 1 + n], rest[1 + n :]


tasks_files, rest = take(rest)
pool_files, rest = take(rest)
ray_files, rest = take(rest)
place_files, rest = take(rest)


def load_json(path):
    try:
        lines = [l for l in open(path).read().splitlines() if l.strip()]
        return json.loads(lines[-1])
    except Exception as error:  # noqa: BLE001
        return {"error": f"unreadable {path}: {error!r}"}


tasks = [load_json(p) for p in tasks_files]
pools = [load_json(p) for p in pool_files]
rays = [load_json(p) for p in ray_files]
place_runs = [load_json(p) for p in place_files]

WORKLOADS = [
    ("single_client_tasks_sync", "tasks sync: `get(f.remote())`"),
    ("single_client_tasks_async", "tasks async: 1000 × `f.remote()`, one `get`"),
    ("1_1_actor_calls_sync", "1:1 actor calls sync"),
    ("1_1_actor_calls_async", "1:1 actor calls async (1000 in flight)"),
    ("arg_1mib_sync", "1 MiB Uint8Array arg, sync (ours: put once, by ref; pools: copied)"),
    ("arg_1mib_async", "1 MiB Uint8Array arg, async (1000 in flight)"),
]
FLOORS = [
    ("pipe_pingpong_sync", "floor: bare pipe ping-pong, 1 in flight (same runtime, 2 processes)"),
    ("pipe_pingpong_async", "floor: bare pipe ping-pong, 1000 in flight"),
]


def stat(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values), "runs": values}


def fmt(x):
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.1f}k"
    if x >= 1e3:
        return f"{x / 1e3:.2f}k"
    if x >= 10:
        return f"{x:.0f}"
    return f"{x:.2f}"


def cell(s):
    if s is None:
        return "—"
    if s["n"] == 1:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def writes(s):
    d, w = s.get("driver_write_syscalls", 0), s.get("workers_write_syscalls", 0)
    if d == 0 and w == 0:
        return "n/a"  # Bun: child stdio are sockets written with send(), which syscw does not count
    return f"{d:.2f}+{w:.2f}"


def ratio(a, b):
    if a is None or b is None or b["median"] == 0:
        return None
    return a["median"] / b["median"]


ray_ok = [r for r in rays if r.get("measured")]
ray = {key: stat([r["results"][key]["mean"] for r in ray_ok if key in r.get("results", {})]) for key, _ in WORKLOADS}
ray_split = {
    key: {f: statistics.median([r["results"][key]["split"][f] for r in ray_ok]) for f in ray_ok[0]["results"][key]["split"]}
    for key, _ in WORKLOADS
    if ray_ok and key in ray_ok[0].get("results", {})
}

report = {
    "date": started,
    "machine": {"cpu": cpu, "cores": int(cores), "ram_gib": float(ram), "kernel": kernel, "virtualization": virt},
    "load_before": load_before,
    "load_after": load_after,
    "repeat": int(repeat),
    "quick": quick == "1",
    "library": {"commit": git_rev, "uncommitted_files_in_lib_and_mod_ts": int(git_dirty)},
    "ray": {
        "version": next((r.get("ray_version") for r in rays if r.get("ray_version")), None),
        "measured": bool(ray_ok),
        "errors": [r.get("error") for r in rays if not r.get("measured")],
        "harness": next((r.get("harness") for r in ray_ok), None),
        "workloads": next((r.get("workloads") for r in ray_ok), None),
        "results": ray,
        "split_median": ray_split,
        "runs": rays,
    },
    "runtimes": {},
}

print(f"## Tasks and actors: @objstore/core vs Ray {report['ray']['version'] or '(not measured)'}, piscina, tinypool")
print()
print(f"machine: {cpu}, {cores} cores, {ram} GiB RAM, Linux {kernel} ({virt})")
print(f"library: commit {git_rev}" + (f" with {git_dirty} uncommitted file(s) in lib/ and mod.ts" if git_dirty != "0" else ""))
print(f"date: {started}; load average before {load_before}, after {load_after}; {repeat} run(s) per runtime, medians of the runs' means (range)")
if quick == "1":
    print("quick mode (CI smoke): short rounds, no Ray; figures are indicative only")
elif not ray_ok:
    print(f"Ray: NOT measured: {report['ray']['errors']}")
else:
    print(f"Ray: {report['ray']['harness']}, {report['ray']['workloads']}; ray.init(num_cpus=2); {len(ray_ok)} run(s)")
print("rates are tasks (or calls) per second; ratio = ours / theirs (above 1: we are faster)")

for runtime in ["node", "deno", "bun"]:
    ours_runs = [t for t in tasks if t.get("runtime") == runtime and "results" in t]
    pool_runs = [p for p in pools if p.get("runtime") == runtime]
    errors = [t["error"] for t in tasks if t.get("runtime") == runtime and "error" in t]
    ours = {key: stat([t["results"][key]["mean"] for t in ours_runs if key in t["results"]]) for key, _ in WORKLOADS}
    floors = {key: stat([t["floors"][key]["mean"] for t in ours_runs if key in t.get("floors", {})]) for key, _ in FLOORS}
    pool = {}
    pool_notes = []
    for name in ["piscina", "tinypool"]:
        entries = [p.get(name, {}) for p in pool_runs]
        pool[name] = {key: stat([e["results"][key]["mean"] for e in entries if key in e.get("results", {})]) for key, _ in WORKLOADS}
        for e in entries:
            if "error" in e:
                pool_notes.append(f"{name}: {e['error'].splitlines()[0]}")
            for key, why in e.get("skipped", {}).items():
                pool_notes.append(f"{name} {key} skipped: {why}")
        for p in pool_runs:
            if "error" in p and name == "piscina":
                pool_notes.append(f"pool_bench failed: {p['error'][:300]}")
    version = next((t.get("runtime_version") for t in ours_runs), "?")
    pool_versions = {name: next((p[name]["version"] for p in pool_runs if name in p), None) for name in ["piscina", "tinypool"]}
    split = {
        key: {f: statistics.median([t["results"][key]["split"][f] for t in ours_runs if key in t["results"]]) for f in ours_runs[0]["results"][key]["split"]}
        for key, _ in WORKLOADS
        if ours_runs and key in ours_runs[0]["results"]
    }
    floor_split = {
        key: {f: statistics.median([t["floors"][key]["split"][f] for t in ours_runs if key in t.get("floors", {})]) for f in ours_runs[0]["floors"][key]["split"]}
        for key, _ in FLOORS
        if ours_runs and key in ours_runs[0].get("floors", {})
    }
    report["runtimes"][runtime] = {
        "version": version,
        "ours": ours,
        "floors": floors,
        "pools": pool,
        "pool_versions": pool_versions,
        "ratio_vs_ray": {key: ratio(ours[key], ray.get(key)) for key, _ in WORKLOADS},
        "ratio_vs_piscina": {key: ratio(ours[key], pool["piscina"][key]) for key, _ in WORKLOADS},
        "ratio_vs_tinypool": {key: ratio(ours[key], pool["tinypool"][key]) for key, _ in WORKLOADS},
        "split_median": split,
        "floor_split_median": floor_split,
        "errors": errors,
        "pool_notes": sorted(set(pool_notes)),
        "runs": {"tasks": [t for t in tasks if t.get("runtime") == runtime], "pools": pool_runs},
    }
    print()
    print(f"### {runtime} {version} (piscina {pool_versions['piscina']}, tinypool {pool_versions['tinypool']}; 2 workers each)")
    print()
    if errors:
        print(f"tasks_bench errors: {errors}")
        print()
    print("| workload | ours | Ray | piscina | tinypool | ratio vs Ray | ratio vs piscina |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, label in WORKLOADS:
        r1 = ratio(ours[key], ray.get(key))
        r2 = ratio(ours[key], pool["piscina"][key])
        print(
            f"| {label} | {cell(ours[key])} | {cell(ray.get(key))} | {cell(pool['piscina'][key])} | {cell(pool['tinypool'][key])} "
            f"| {'—' if r1 is None else f'{r1:.1f}×'} | {'—' if r2 is None else f'{r2:.2f}×'} |"
        )
    for key, label in FLOORS:
        print(f"| {label} | {cell(floors[key])} | | | | | |")
    for note in sorted(set(pool_notes)):
        print(f"\n{note}")
    # Pinned runs: the same placement for ours and the pools.
    placed = {}
    for t in place_runs:
        if t.get("runtime") != runtime or "placement" not in t:
            continue
        pl = t["placement"]
        if "results" in t:  # ours (tasks_bench)
            for key, r in list(t["results"].items()) + list(t.get("floors", {}).items()):
                placed.setdefault((key, pl, "ours"), []).append(r["mean"])
        for name in ["piscina", "tinypool"]:
            for key, r in t.get(name, {}).get("results", {}).items():
                placed.setdefault((key, pl, name), []).append(r["mean"])
    if placed:
        report["runtimes"][runtime]["pinned"] = {f"{k[0]}/{k[1]}/{k[2]}": stat(v) for k, v in placed.items()}
        print()
        print("Pinned (taskset): 'one vCPU' = every process and thread on CPU 0; 'two vCPUs' = the driver (pool: main thread) on CPU 0, workers (pool: its other threads) on CPU 1:")
        print()
        print("| workload | one vCPU: ours | piscina | tinypool | ratio vs piscina | two vCPUs: ours | piscina | tinypool | ratio vs piscina |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, label in FLOORS[:1] + WORKLOADS[:4]:
            cells = []
            for pl in ["same", "split"]:
                c = {who: stat(placed.get((key, pl, who), [])) for who in ["ours", "piscina", "tinypool"]}
                r2 = ratio(c["ours"], c["piscina"])
                cells += [cell(c["ours"]), cell(c["piscina"]), cell(c["tinypool"]), "—" if r2 is None else f"{r2:.2f}×"]
            print(f"| {key} | " + " | ".join(cells) + " |")
    print()
    print("Ours, per op, medians (µs; sleeps = voluntary context switches; wall − CPU < 0 when both sides run at once):")
    print()
    print("| workload | wall | driver CPU | workers CPU | wall − CPU | run-queue wait driver+workers | sleeps driver+workers | write syscalls driver+workers |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, label in FLOORS[:1] + WORKLOADS + FLOORS[1:]:
        s = split.get(key) or floor_split.get(key)
        if s is None:
            continue
        print(
            f"| {key} | {s['wall_us']:.1f} | {s['driver_cpu_us']:.1f} | {s['workers_cpu_us']:.1f} | {s['neither_running_us']:.1f} "
            f"| {s['driver_runqueue_wait_us']:.1f}+{s['workers_runqueue_wait_us']:.1f} "
            f"| {s['driver_voluntary_switches']:.2f}+{s['workers_voluntary_switches']:.2f} "
            f"| {writes(s)} |"
        )

if ray_split:
    print()
    print("Ray, per op, medians (µs of CPU): driver | workers | raylet+GCS | wall")
    print()
    for key, s in ray_split.items():
        print(f"- {key}: {s['driver_cpu_us']:.0f} | {s['workers_cpu_us']:.0f} | {s['ray_daemons_cpu_us']:.0f} | {s['wall_us']:.0f}")

with open(out, "w") as f:
    json.dump(report, f, indent=1)
    f.write("\n")
PY
echo "results: ${out#"$root"/}" >&2
