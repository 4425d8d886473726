#!/usr/bin/env bash
# Installs Ray (pinned, default 2.60.0) and numpy into .tools/ray-venv ($RAY_VENV if set), once.
# Used by bench/run_all.sh; safe to run again (skips when the venv already has Ray).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RAY_VENV:-$root/.tools/ray-venv}"
version="${RAY_VERSION:-2.60.0}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import ray, numpy" 2>/dev/null; then
  exit 0
fi
python="${PYTHON:-python3}"
mkdir -p "$root/.tools"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "ray==$version" numpy
"$venv/bin/python" -c "import ray, numpy; print('ray', ray.__version__, 'numpy', numpy.__version__)"
