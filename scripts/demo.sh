#!/usr/bin/env bash
# Installs what is needed (once), then runs the demo on Node 24.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
node examples/demo.ts
