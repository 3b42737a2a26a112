#!/usr/bin/env bash
# The main job on the embedded default: install if needed, then `canary-triton demo` (bundled
# tiny-trained checkpoint, rebuilt if absent; a bundled sample; prints its transcript).
# Pass a real checkpoint with: scripts/demo.sh --checkpoint DIR --llm-dir QWEN3_DIR --audio FILE
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/canary-triton demo "$@"
