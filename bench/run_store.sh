#!/usr/bin/env bash
# The object-store part of bench/run_all.sh: store workloads on Node, Deno and Bun, and Ray's
# `ray microbenchmark` (full mode). Same options as run_all.sh (--quick, ...).
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_all.sh" --only store,ray "$@"
