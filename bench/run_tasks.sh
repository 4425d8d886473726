#!/usr/bin/env bash
# The task part of bench/run_all.sh: task and actor workloads on Node, Deno and Bun, piscina and
# tinypool, and Ray's `ray microbenchmark` (full mode). Same options as run_all.sh (--quick,
# --pinned, ...).
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_all.sh" --only tasks,pools,ray "$@"
