#!/usr/bin/env bash
# The first GPU run, one command. GPU-ONLY (not run in CI): inside the image built from
# Dockerfile.triton, on one GPU:
#   docker run --rm --gpus 1 --entrypoint canary-gpu-first-run canary-triton:gpu
# (the image installs this script as /usr/local/bin/canary-gpu-first-run).
# Exports the bundled tiny-trained checkpoint with --profile gpu (TensorRT + TensorRT-LLM engines),
# checks the repository against the backends' load-time rules, serves it, transcribes the held-out
# clips and compares them with the CPU profile's transcripts, sends bad inputs and one cancellation,
# and prints a table (stage, pass/fail, seconds, versions, the error where one failed).
# Exit 0 when every stage passed. Work folder: $CANARY_FIRST_RUN (default /engines/first-run).
set -euo pipefail
work="${CANARY_FIRST_RUN:-${CANARY_ENGINES:-/engines}/first-run}"
mkdir -p "$work" "${HOME:-/engines/home}" "${NUMBA_CACHE_DIR:-/engines/cache/numba}"
exec timeout "${CANARY_FIRST_RUN_TIMEOUT_S:-1200}" python3 -m canary_triton.gpu.first_run \
  --work "$work" --release "${CANARY_TRITON_RELEASE:-}" --report "$work/first-run.md" "$@"
