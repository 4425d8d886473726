#!/usr/bin/env bash
# Issue #5's spilling benchmark on Node, Deno and Bun, against dd on the same disk and against
# Ray 2.60 in the same run. One command:
#
#   bash bench/run_spill.sh            # full: 8 GiB through a 1 GiB store per runtime, + Ray (~10 min)
#   bash bench/run_spill.sh --quick    # CI smoke: 256 MiB through 64 MiB, no Ray (< 30 s)
#
# Prints a Markdown table per runtime (workload | ours | Ray | dd | ours/dd | ours/Ray) with the
# machine and date, and writes bench/results/<date>-spill.json (<date>-spill-quick.json).
#
# The disk is $OBJSTORE_BENCH_DIR (default /tmp), which must not be tmpfs. If it has less free
# space than twice the data, the data is scaled down to fit, and the output says so. The S3
# pass runs when OBJSTORE_TEST_S3_ENDPOINT is set or scripts/s3_server.sh has a server running
# (start one with `eval "$(bash scripts/s3_server.sh start)"`). Ray: bench/setup_ray.sh installs
# it into .tools/ray-venv; Ray's spill statistics (`ray memory --stats-only`) need grpcio, which
# the plain ray wheel lacks, so this script installs a pinned grpcio into .tools/ray-grpc (once)
# and puts it on ray_spill.py's PYTHONPATH only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "usage: bash bench/run_spill.sh [--quick]" >&2; exit 2 ;;
  esac
done
GRPCIO_VERSION=1.85.3
date="$(date -u +%Y-%m-%d)"
results="$root/bench/results"
mkdir -p "$results"
work="$(mktemp -d)"
trap 'echo "raw runs kept in $work" >&2' ERR
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_before="$(load)"
started="$(date -u '+%Y-%m-%d %H:%M UTC')"

# --- the disk: not tmpfs, room for twice the data (else scale down).
dir="$(cd "${OBJSTORE_BENCH_DIR:-/tmp}" && pwd)"
fstype="$(findmnt -no FSTYPE -T "$dir" 2>/dev/null | head -1 || stat -f -c %T "$dir")"
if [ "$fstype" = tmpfs ]; then
  echo "run_spill: $dir is tmpfs, not a disk; set OBJSTORE_BENCH_DIR to a directory on disk" >&2
  exit 1
fi
free_mib=$(( $(df -Pk "$dir" | awk 'NR == 2 { print $4 }') / 1024 ))
total_mib=$([ "$quick" = 1 ] && echo 256 || echo 8192)
object_mib=$([ "$quick" = 1 ] && echo 8 || echo 64)
note=""
if [ $(( free_mib - 1024 )) -lt $(( 2 * total_mib )) ]; then
  scaled=$(( (free_mib - 1024) / 2 / object_mib * object_mib ))
  if [ "$scaled" -lt $(( 4 * object_mib )) ]; then
    echo "run_spill: only $free_mib MiB free in $dir; not enough for a meaningful run" >&2
    exit 1
  fi
  note="scaled down: $dir had $free_mib MiB free, less than twice the $total_mib MiB of data; ran $scaled MiB"
  echo "run_spill: $note" >&2
  total_mib=$scaled
fi
size_args=(--total-mib "$total_mib")
echo "== disk: $dir ($fstype), $free_mib MiB free; data $total_mib MiB per pass; load $load_before" >&2

# --- S3: a server already running, or none.
if [ -z "${OBJSTORE_TEST_S3_ENDPOINT:-}" ] && s3env="$(bash scripts/s3_server.sh status 2>/dev/null)"; then
  eval "$s3env"
fi
s3_note="${OBJSTORE_TEST_S3_ENDPOINT:+S3 pass against $OBJSTORE_TEST_S3_ENDPOINT}"
s3_note="${s3_note:-no S3 pass: OBJSTORE_TEST_S3_ENDPOINT unset and no scripts/s3_server.sh server running}"
echo "== $s3_note" >&2

# The library changes while a long run goes on (others work in this checkout), so every run
# uses one snapshot of it: mod.ts, lib/, the bench and libobjstore.so, copied now.
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain -- mod.ts lib zig/src zig/include 2>/dev/null | wc -l)"
snap="$work/snapshot"
mkdir -p "$snap/bench" "$snap/zig/zig-out/lib"
cp -r mod.ts lib package.json deno.json "$snap/"
cp bench/spill_bench.ts "$snap/bench/"
cp "$OBJSTORE_LIB" "$snap/zig/zig-out/lib/"
ln -s "$root/node_modules" "$snap/node_modules"
export OBJSTORE_LIB="$snap/zig/zig-out/lib/libobjstore.so"
export OBJSTORE_BENCH_DIR="$dir"
echo "== measuring commit $commit ($dirty changed library files not committed), snapshot in $snap" >&2

flag=$([ "$quick" = 1 ] && echo --quick || true)
runs=()
for runtime in node deno bun; do
  out="$work/$runtime.json"
  case "$runtime" in
    node) cmd=(node --expose-gc "$snap/bench/spill_bench.ts" $flag "${size_args[@]}") ;;
    deno) cmd=(deno run -A --v8-flags=--expose-gc "$snap/bench/spill_bench.ts" $flag "${size_args[@]}") ;;
    bun) cmd=(bun "$snap/bench/spill_bench.ts" $flag "${size_args[@]}") ;;
  esac
  echo "== $runtime: ${cmd[*]}" >&2
  if ! (cd "$snap" && "${cmd[@]}") >"$out" 2> >(tee "$work/$runtime.err" | sed 's/^/   /' >&2); then
    printf '{"runtime":"%s","error":%s}\n' "$runtime" \
      "$(tail -3 "$work/$runtime.err" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" >"$out"
  fi
  runs+=("$out")
done

ray_json="$work/ray.json"
echo '{"measured": false, "skipped": "--quick"}' >"$ray_json"
if [ "$quick" = 0 ]; then
  echo "== Ray: installing (once) and measuring" >&2
  if ! bash bench/setup_ray.sh >"$work/ray-setup.log" 2>&1; then
    tail -5 "$work/ray-setup.log" >&2
    echo '{"measured": false, "error": "bench/setup_ray.sh failed"}' >"$ray_json"
  else
    grpc="$root/.tools/ray-grpc"
    if [ ! -f "$grpc/grpcio-$GRPCIO_VERSION.dist-info/METADATA" ]; then
      rm -rf "$grpc"
      .tools/ray-venv/bin/pip install --quiet --disable-pip-version-check --no-deps --target "$grpc" "grpcio==$GRPCIO_VERSION" >&2
    fi
    PYTHONPATH="$grpc" .tools/ray-venv/bin/python bench/ray_spill.py --dir "$dir" "${size_args[@]}" \
      >"$ray_json" 2> >(sed 's/^/   /' >&2) || true
  fi
fi

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
ram_gib="$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
python3 - "$work/machine.json" <<EOF
import json, sys
json.dump({"date": "$date", "started": "$started", "finished": "$(date -u '+%Y-%m-%d %H:%M UTC')", "cpu": "$cpu",
           "cores": $(nproc), "ram_gib": $ram_gib, "kernel": "$(uname -r)", "load_before": "$load_before",
           "load_after": "$(load)", "dir": "$dir", "fs": "$fstype", "free_mib_before": $free_mib, "total_mib": $total_mib,
           "scaled_note": "$note", "s3_note": "$s3_note", "commit": "$commit", "uncommitted_library_files": $dirty,
           "quick": $([ "$quick" = 1 ] && echo True || echo False)}, open(sys.argv[1], "w"))
EOF

out="$results/$date-spill$([ "$quick" = 1 ] && echo -quick || true).json"
python3 - "$out" "$work/machine.json" "$ray_json" "${runs[@]}" <<'EOF'
"""Merges the runs into one JSON file and prints the tables."""
import json
import sys

out_path, machine_path, ray_path, *run_paths = sys.argv[1:]


def last_json(path):
    try:
        lines = [l for l in open(path).read().strip().splitlines() if l.startswith("{")]
        return json.loads(lines[-1])
    except Exception as error:  # noqa: BLE001
        return {"error": f"no JSON from {path}: {error}"}


machine = json.load(open(machine_path))
ray = last_json(ray_path)
runs = [last_json(p) for p in run_paths]
json.dump({"machine": machine, "ray": ray, "runs": runs}, open(out_path, "w"), indent=1)


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def f(x, unit=""):
    return "–" if x is None else f"{x:.2f}{unit}"


def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def mean(*xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


MIB = 1024 * 1024
print(f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, kernel {machine['kernel']}; "
      f"disk {machine['dir']} ({machine['fs']}), {machine['free_mib_before'] / 1024:.0f} GiB free. "
      f"{machine['started']} – {machine['finished']}; load average {machine['load_before']} before, {machine['load_after']} after. "
      f"Commit {machine['commit']} ({machine['uncommitted_library_files']} library files changed, not committed).")
if machine["scaled_note"]:
    print(f"**Note: {machine['scaled_note']}.**")
rp = get(ray, "passes") or {}
if ray.get("measured"):
    print(f"Ray {ray.get('ray_version')}: load {ray.get('load_before')} → {ray.get('load_after')}; dd during Ray's run: "
          f"write {f(get(ray, 'dd', 'write_gb_per_s'))}, read {f(get(ray, 'dd', 'read_gb_per_s'))} GB/s.")
elif not machine["quick"]:
    print(f"Ray: not measured ({ray.get('error') or ray.get('skipped')}).")
print()

goals = []
for run in runs:
    name = f"{run.get('runtime')} {run.get('runtime_version', '')}".strip()
    if "error" in run and "passes" not in run:
        print(f"### {name}\n\nfailed: {run['error']}\n")
        continue
    held, freed = get(run, "passes", "held") or {}, get(run, "passes", "freed") or {}
    dd_w, dd_r = get(run, "dd", "write_gb_per_s"), get(run, "dd", "read_gb_per_s")
    total, store, obj = run["total_bytes"], run["store_bytes"], run["object_bytes"]
    shape = f"{total / 2**30:g} GiB as {total // obj} × {obj // MIB} MiB through {store // MIB} MiB"
    rh, rf = rp.get("held") or {}, rp.get("freed") or {}
    rows = []

    def row(label, ours, theirs, anchor, fmt_both=None):
        rows.append(f"| {label} | {fmt_both[0] if fmt_both else f(ours)} | {fmt_both[1] if fmt_both else f(theirs)} | "
                    f"{f(anchor)} | {ratio(ours, anchor)} | {ratio(ours, theirs)} |")

    put_ours = mean(get(held, "put", "gb_per_s"), get(freed, "put", "gb_per_s"))
    put_ray = mean(get(rh, "put", "gb_per_s"), get(rf, "put", "gb_per_s"))
    row(f"put {shape}, GB/s (data / put loop; mean of 2 passes)", put_ours, put_ray, dd_w)
    spill_ours = mean(get(held, "put", "spill_gb_per_s"), get(freed, "put", "spill_gb_per_s"))
    spill_ray = mean(get(rh, "put", "spill_gb_per_s"), get(rf, "put", "spill_gb_per_s"))
    row("spill write, GB/s (bytes spilled by the last put / put loop)", spill_ours, spill_ray, dd_w)
    ray_synced = mean(*[
        p["put"]["settled"]["spilled_bytes"] / (p["put"]["settled"]["seconds"] + p["sync_s"]) / 1e9
        for p in (rh, rf) if get(p, "put", "settled") and p.get("sync_s") is not None
    ])
    ours_settled = mean(*[
        p["put"]["settled"]["spilled_bytes"] / p["put"]["settled"]["seconds"] / 1e9
        for p in (held, freed) if get(p, "put", "settled")
    ])
    row("spill write incl. background spilling, on disk: spilled once settled / (time to settle + Ray's `sync`)",
        ours_settled, ray_synced, dd_w)
    row("get all in put order, refs held, GB/s (data / get loop)", get(held, "get", "gb_per_s"), get(rh, "get", "gb_per_s"), dd_r)
    row("restore, get + free each: restored bytes / get loop, GB/s", get(freed, "get", "restore_gb_per_s"),
        get(rf, "get", "restore_gb_per_s"), dd_r)
    print(f"### {name}\n")
    print(f"load {run.get('load_before')} → {run.get('load_after')}; page cache dropped before gets and dd reads: "
          f"{'yes' if get(run, 'dd', 'cache_dropped') and held.get('cache_dropped') else 'NO'}; "
          f"dd (mean of before/after): write {f(dd_w)}, read {f(dd_r)} GB/s\n")
    print("| workload | ours | Ray | dd | ours/dd | ours/Ray |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    s3 = run.get("s3") or {}
    if "put" in s3:
        s3shape = f"{s3['total_bytes'] / 2**30:g} GiB as {s3['objects']} × {s3['object_bytes'] // MIB} MiB through {s3['store_bytes'] // MIB} MiB"
        print(f"| S3 put {s3shape}, GB/s (local staging) | {f(get(s3, 'put', 'gb_per_s'))} | – | – | – | – |")
        print(f"| S3: spilled bytes / time until every file is in the bucket | {f(get(s3, 'upload', 'gb_per_s'))} | – | – | – | – |")
        print(f"| S3 restore from the bucket, get + free each | {f(get(s3, 'get', 'restore_gb_per_s'))} | – | – | – | – |")
    else:
        print(f"\nS3: {s3.get('skipped', 'not run')}")
    respill = get(held, "get", "disk_write_bytes")
    print(f"\nBytes: spilled {f((get(held, 'put', 'spilled_bytes') or 0) / 1e9)} GB by the last put (held pass); the held get "
          f"restored {f((get(held, 'get', 'restored_bytes') or 0) / 1e9)} GB and wrote {f((respill or 0) / 1e9)} GB "
          f"(restored objects spill again to make room); Ray's held get spilled again "
          f"{f((get(rh, 'get', 'spilled_during_get_bytes') or 0) / 1e9)} GB. CPU s (put / held get / freed get): "
          f"{f(get(held, 'put', 'cpu_s'))} / {f(get(held, 'get', 'cpu_s'))} / {f(get(freed, 'get', 'cpu_s'))}.\n")
    sw = None if spill_ours is None or dd_w is None else spill_ours / dd_w
    rr = None if get(freed, "get", "restore_gb_per_s") is None or dd_r is None else get(freed, "get", "restore_gb_per_s") / dd_r
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    g = [f"spill write ≥ 0.8× dd: {f(sw)}× → {verdict(sw is not None and sw >= 0.8)}",
         f"restore ≥ 0.8× dd read: {f(rr)}× → {verdict(rr is not None and rr >= 0.8)}"]
    if ray.get("measured"):
        faster = all(a is not None and b is not None and a > b for a, b in [
            (put_ours, put_ray), (get(held, "get", "gb_per_s"), get(rh, "get", "gb_per_s")),
            (get(freed, "get", "restore_gb_per_s"), get(rf, "get", "restore_gb_per_s"))])
        g.append(f"faster than Ray (put, held get, restore): {verdict(faster)}")
    print(f"Goals ({name}): " + "; ".join(g) + ".\n")
print(f"results: {out_path}", file=sys.stderr)
EOF
rm -rf "$work"
