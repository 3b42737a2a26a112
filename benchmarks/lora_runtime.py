"""Decode-step cost of the run-time LoRA (base weights + the ASR adapter per row) against the
merged weights, on the CPU engine's model runner, for an export made by ``canary-triton export``.

Both runners hold ``--rows`` rows prefilled with ``--context`` positions; each decode step is
timed ``--steps`` times (after ``--warmup`` steps), minimum and median per step printed, for the
merged model, the base model with the adapter on every row (all ASR) and on half the rows (ASR
and LLM mode in one batch). The merged copy costs a second set of LLM weights in memory (at full
size 3.4 GB in bf16); the run-time adapter costs the extra ``x A^T B^T`` products per step.

    python -m benchmarks.lora_runtime EXPORT_DIR [--rows 1,8,16] [--context 160] [--steps 20]
        [--threads N] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from benchmarks.throughput import parse_ints
from canary_triton.runtime.loaders import load_llm, load_lora

# torch and the model runner (torch) are imported by main: --help needs neither.


def time_steps(runner, rows: int, context: int, steps: int, warmup: int, adapter: list[bool] | None) -> list[float]:
    import torch

    g = torch.Generator().manual_seed(0)
    hidden = runner.shape.hidden
    runner.prefill(0, [torch.randn(context, hidden, generator=g) * 0.02 for _ in range(rows)], adapter)
    tokens = torch.randint(0, min(1000, runner.embedding.num_embeddings), (rows,), generator=g)
    out = []
    for k in range(warmup + steps):
        positions = torch.full((rows,), context + k, dtype=torch.long)
        t0 = time.perf_counter()
        runner.decode(tokens, positions, adapter)
        if k >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from canary_triton.cpu_llm.runner import ModelRunner

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--rows", type=parse_ints, default=(1, 8, 16))
    ap.add_argument("--context", type=int, default=160)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="default: the export's")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype) if a.dtype else None
    lora = load_lora(a.export_dir, dtype)
    if lora is None:
        print(
            f"error: {a.export_dir} has no ASR adapter beside llm_base (a checkpoint without LoRA, or an older export)",
            file=sys.stderr,
        )
        return 2
    merged = load_llm(a.export_dir, "llm_merged", dtype)
    base = load_llm(a.export_dir, "llm_base", dtype)
    print(
        f"{a.export_dir}: LLM {str(merged.dtype).replace('torch.', '')}, {torch.get_num_threads()} threads, "
        f"context {a.context}, {a.steps} timed steps; LoRA {lora.describe()}"
    )
    print(
        "| rows | merged ms/step (min, median) | run-time LoRA, all rows | run-time LoRA, half the rows | "
        "all rows vs merged (median) |"
    )
    print("|---|---|---|---|---|")
    for rows in a.rows:
        cap = a.context + a.warmup + a.steps + 1
        r_merged = ModelRunner(merged, rows, cap)
        r_lora = ModelRunner(base, rows, cap, lora=lora)
        m = time_steps(r_merged, rows, a.context, a.steps, a.warmup, None)
        full = time_steps(r_lora, rows, a.context, a.steps, a.warmup, [True] * rows)
        half = time_steps(r_lora, rows, a.context, a.steps, a.warmup, [i % 2 == 0 for i in range(rows)])

        def cell(xs):
            return f"{1e3 * min(xs):.1f}, {1e3 * statistics.median(xs):.1f}"

        print(
            f"| {rows} | {cell(m)} | {cell(full)} | {cell(half)} | "
            f"{statistics.median(full) / statistics.median(m):.2f}x |",
            flush=True,
        )
        del r_merged, r_lora
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
