#!/usr/bin/env bash
# GPU image entrypoint: build engines for this GPU's architecture once (cached in $CANARY_ENGINES,
# a volume shared by restarts), then run NVIDIA's tritonserver on the generated repository.
# NOT RUN IN CI. Environment: CANARY_CHECKPOINT, CANARY_LLM_DIR, CANARY_ENGINES, CANARY_EXPORT_ARGS
# (extra `canary-triton export` options, e.g. "--precision bf16 --gpu-model h200"; batching defaults
# come from the throughput model, docs/gpu-throughput-model.md); extra
# arguments go to tritonserver.
set -euo pipefail
# Caches of NeMo / numba / Hugging Face (HOME and friends point into the engines volume, see the Dockerfile).
mkdir -p "${HOME:-/engines/home}" "${XDG_CACHE_HOME:-/engines/cache}" "${NUMBA_CACHE_DIR:-/engines/cache/numba}"
arch=$(python3 -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'sm{m}{n}')")
out="${CANARY_ENGINES:-/engines}/$arch"
if [ ! -f "$out/model_repository/canary_qwen/config.pbtxt" ]; then
  # shellcheck disable=SC2086
  canary-triton export "$CANARY_CHECKPOINT" --output "$out" --profile gpu --force \
    --llm-dir "$CANARY_LLM_DIR" ${CANARY_EXPORT_ARGS:-}
fi
# Secure defaults, as `canary-triton serve` (canary_triton/serving/tritonserver.py hardening_args): operator APIs
# only with the admin key ($CANARY_TRITON_ADMIN_KEY, else random), no model control, no
# SageMaker/Vertex, HTTP bodies bounded by the long-form limit (1 h of FP32 audio + 1 MiB).
# Models load one at a time (as serve does for a GPU repository, tritonserver.py SEQUENTIAL_LOAD_ARGS):
# llm and llm_base each size their KV cache as a fraction of the GPU memory free when they load, and
# loaded in parallel both could see the same free memory.
key="${CANARY_TRITON_ADMIN_KEY:-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')}"
restricted="model-repository,logging,trace,shared-memory:admin-key=$key"
exec tritonserver --model-repository="$out/model_repository" \
  --http-port=8000 --grpc-port=8001 --metrics-port=8002 \
  --exit-timeout-secs=30 --strict-readiness=true --model-load-thread-count=1 \
  --model-control-mode=none --allow-sagemaker=false --allow-vertex-ai=false \
  --http-restricted-api="$restricted" --grpc-restricted-protocol="$restricted" \
  --http-max-input-size=$((3600 * 16000 * 4 + 1048576)) "$@"
