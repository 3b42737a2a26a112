#!/usr/bin/env bash
# Create ./.venv (if missing) and install the project with every extra, pinned.
# Idempotent: a second run with nothing changed only checks. Needs: Python 3.10-3.12 with venv.
# Prints one line per step; pip's full output goes to $VENV/install.log, which a failing step names.
set -Eeuo pipefail  # -E: the ERR trap below also fires inside run()
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.canary-triton-installed"
want=$(cat pyproject.toml scripts/bootstrap.sh scripts/install_perf_analyzer.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV..." >&2
  "$PY" -m venv "$VENV"
fi
log="$VENV/install.log"
: > "$log"
step="starting"
trap 'echo "bootstrap: failed while $step; pip'"'"'s full output: $log" >&2' ERR
run() {  # run "what" cmd...: one progress line, the command's output appended to the log
  step=$1
  shift
  echo "bootstrap: $step..." >&2
  printf '\n### %s: %s\n' "$step" "$*" >> "$log"
  "$@" >> "$log" 2>&1
}
run "upgrading pip" "$VENV/bin/python" -m pip install --upgrade pip
# torch first, pinned: on machines that carry the CPU wheel locally pip takes it; elsewhere this
# pulls the default build of the same version.
run "installing torch" "$VENV/bin/python" -m pip install "torch==2.13.0"
run "installing the project" "$VENV/bin/python" -m pip install -e ".[dev]"
run "checking the installed set (pip check)" "$VENV/bin/python" -m pip check
# perf_analyzer (the served tests drive every entry point with it, as users measure Triton)
run "installing perf_analyzer" env VENV="$VENV" bash scripts/install_perf_analyzer.sh
echo "$want" > "$stamp"
echo "bootstrap: done ($VENV; log: $log)" >&2
