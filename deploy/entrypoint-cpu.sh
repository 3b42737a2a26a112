#!/usr/bin/env bash
# CPU image entrypoint (also run by tests/test_deploy.py): export the checkpoint once, then serve.
# Environment: CANARY_CHECKPOINT (checkpoint folder), CANARY_LLM_DIR (Qwen3 folder, optional),
# CANARY_EXPORT (where the export and repository go), CANARY_HOST, CANARY_HTTP_PORT,
# CANARY_GRPC_PORT, CANARY_METRICS_PORT; extra arguments go to `canary-triton serve`.
set -euo pipefail
CANARY_EXPORT=${CANARY_EXPORT:-/var/lib/canary/export}
if [ ! -f "$CANARY_EXPORT/model_repository/canary_qwen/config.pbtxt" ]; then
  llm_args=()
  if [ -n "${CANARY_LLM_DIR:-}" ]; then llm_args=(--llm-dir "$CANARY_LLM_DIR"); fi
  canary-triton export "$CANARY_CHECKPOINT" --output "$CANARY_EXPORT" --profile cpu --force "${llm_args[@]}" >&2
fi
exec canary-triton serve "$CANARY_EXPORT" \
  --host "${CANARY_HOST:-0.0.0.0}" \
  --http-port "${CANARY_HTTP_PORT:-8000}" \
  --grpc-port "${CANARY_GRPC_PORT:-8001}" \
  --metrics-port "${CANARY_METRICS_PORT:-8002}" "$@"
