#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what it needs, then one pytest session.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# lint and format first: configured in pyproject.toml ([tool.ruff])
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
