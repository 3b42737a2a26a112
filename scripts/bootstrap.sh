#!/usr/bin/env bash
# Create ./.venv (if missing) and install the project with every extra, pinned.
# Idempotent: a second run with nothing changed only checks. Needs: Python 3.10-3.12 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.canary-triton-installed"
want=$(cat pyproject.toml scripts/bootstrap.sh scripts/install_perf_analyzer.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, pinned: on machines that carry the CPU wheel locally pip takes it; elsewhere this
# pulls the default build of the same version.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
"$VENV/bin/python" -m pip check >&2
# perf_analyzer (the served tests drive every entry point with it, as users measure Triton)
VENV="$VENV" bash scripts/install_perf_analyzer.sh
echo "$want" > "$stamp"
