#!/usr/bin/env bash
# perf_analyzer against every entry point of a running server, as users measure Triton; prints one
# markdown row per run (throughput and latency percentiles from perf_analyzer's own CSV).
#
#   bash client/perf_analyzer.sh [AUDIO...]        # default: the bundled held-out clips
#
# Environment: HOST (127.0.0.1), GRPC_PORT (8001), HTTP_PORT (8000), CONCURRENCY (16),
# REQUESTS (requests per measurement window, 96), PERF_ANALYZER (.venv/bin/perf_analyzer, which
# scripts/bootstrap.sh installs), CANARY_TRITON (.venv/bin/canary-triton). Inputs are written by
# `canary-triton perf-input` (asr, llm and ask modes); LLM mode asks the summary instruction about
# the held-out transcripts. Exit status: perf_analyzer's first failure, else 0.
set -euo pipefail
cd "$(dirname "$0")/.."
host=${HOST:-127.0.0.1}
grpc="$host:${GRPC_PORT:-8001}"
http="$host:${HTTP_PORT:-8000}"
concurrency=${CONCURRENCY:-16}
requests=${REQUESTS:-96}
pa=${PERF_ANALYZER:-.venv/bin/perf_analyzer}
ct=${CANARY_TRITON:-.venv/bin/canary-triton}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

clips=("$@")
if [ ${#clips[@]} -eq 0 ]; then
  clips=(canary_triton/assets/speech/heldout/*.flac)
fi
"$ct" perf-input "${clips[@]}" -o "$work/asr.json" >/dev/null
"$ct" perf-input "${clips[@]}" -o "$work/ask.json" --mode ask >/dev/null
# LLM mode: text files; the held-out manifest's reference transcripts
python3 - "$work" <<'PY'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in pathlib.Path("canary_triton/assets/speech/heldout/manifest.jsonl").read_text().splitlines() if l.strip()]
for i, row in enumerate(rows):
    (work / f"t{i:03d}.txt").write_text(row["text"] or "silence")
PY
"$ct" perf-input "$work"/t*.txt -o "$work/llm.json" --mode llm --max-new-tokens 16 >/dev/null

echo "| model | protocol | concurrency | infer/s | p50 ms | p90 ms | p99 ms |"
echo "|---|---|---|---|---|---|---|"
status=0
run() {  # model protocol input [extra perf_analyzer args...]
  local model=$1 protocol=$2 data=$3
  shift 3
  local url=$grpc
  [ "$protocol" = http ] && url=$http
  local csv="$work/$model-$protocol.csv"
  if "$pa" -m "$model" -u "$url" -i "$protocol" -b 1 --input-data "$work/$data" \
      --concurrency-range "$concurrency" --measurement-mode count_windows \
      --measurement-request-count "$requests" --stability-percentage 1000 -f "$csv" "$@" \
      >"$work/$model-$protocol.log" 2>&1; then
    # perf_analyzer's CSV: Concurrency, Inferences/Second, ..., p50/p90/p95/p99 latency (us)
    python3 - "$csv" "$model" "$protocol" <<'PY'
import csv, sys
row = next(csv.DictReader(open(sys.argv[1])))
ms = lambda key: f"{int(row[key]) / 1000:.0f}"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {row['Concurrency']} | {float(row['Inferences/Second']):.1f} "
      f"| {ms('p50 latency')} | {ms('p90 latency')} | {ms('p99 latency')} |")
PY
  else
    echo "| $model | $protocol | $concurrency | failed: $(tail -1 "$work/$model-$protocol.log") | | | |"
    [ $status -ne 0 ] || status=1
  fi
}
run canary_qwen grpc asr.json
run canary_qwen http asr.json
run canary_qwen_stream grpc asr.json --streaming
run canary_qwen_long grpc asr.json
run canary_qwen_long_stream grpc asr.json --streaming
run canary_qwen_llm grpc llm.json
run canary_qwen_ask grpc ask.json
exit $status
