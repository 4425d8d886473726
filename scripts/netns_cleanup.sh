#!/usr/bin/env bash
# Removes the network namespaces and links a test run made (tests/netns.ts): every namespace
# and link whose name starts with PREFIX, after killing what runs in those namespaces.
#   scripts/netns_cleanup.sh PREFIX
set -uo pipefail
prefix="${1:?usage: netns_cleanup.sh PREFIX}"
[[ "$prefix" =~ ^osn[0-9a-f]{1,4}$ ]] || { echo "netns_cleanup: refusing prefix '$prefix'" >&2; exit 2; }
command -v ip >/dev/null 2>&1 || exit 0
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true); do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$prefix" || true); do
  ip link del "$link" 2>/dev/null || true
done
