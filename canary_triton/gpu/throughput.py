"""The GPU throughput model as code: a MODEL, not a measurement (docs/gpu-throughput-model.md).

Arithmetic on the checkpoint's shapes (every dimension read from its configs) and a GPU's
data-sheet peaks, with the efficiencies and traffic stated in :class:`Assumptions`. It sizes the
gpu profile's defaults (:func:`derive_gpu_defaults`, applied by ``canary-triton export --profile
gpu`` unless an option is given) and predicts what the first measurement should confirm or refute
(:func:`predict`). Nothing here was measured: no GPU was available to this project.

Its parts: :mod:`canary_triton.gpu.assumptions` (the GPUs' data sheets, :class:`Assumptions`),
:mod:`canary_triton.gpu.model_shapes` (what it reads of a checkpoint), :mod:`canary_triton.gpu.costs`
(a request's costs, the memory plan); here the defaults, the predictions and their tables (every
public name of the parts is importable from here too).

Library only: no torch or TensorRT import. ``python -m canary_triton.gpu.throughput CHECKPOINT``
prints the tables of the docs page for a checkpoint.

Units: FLOP, bytes, seconds; GB = 1e9 bytes (as the data sheets).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from canary_triton import contract as C
from canary_triton.checkpoint.reader import inspect_checkpoint
from canary_triton.gpu.assumptions import BF16_BYTES, DEFAULT_GPU, GB, GPUS, H100_SXM, H200, Assumptions, GpuSpec
from canary_triton.gpu.costs import (
    MemoryPlan,
    RequestCosts,
    decode_context,
    decode_step_seconds,
    encoder_activation_bytes,
    encoder_flops_per_audio_second,
    encoder_flops_per_frame,
    iteration_seconds,
    kv_bytes_per_request,
    kv_bytes_per_token,
    max_rate,
    memory_plan,
    output_tokens,
    padding_overhead,
    prefill_flops_per_audio_second,
    prefill_flops_per_request,
    prompt_tokens,
    request_costs,
    requests_in_flight,
    reserved_output_len,
    weight_bytes_per_step,
)
from canary_triton.gpu.model_shapes import SHAPES, ModelShapes, fastconformer_params, qwen3_non_embedding_params

#: The parts live in gpu.assumptions, gpu.model_shapes and gpu.costs; this module names them too.
__all__ = [
    "BF16_BYTES",
    "DEFAULT_GPU",
    "GB",
    "GPUS",
    "H100_SXM",
    "H200",
    "SHAPES",
    "Assumptions",
    "GpuSpec",
    "MemoryPlan",
    "ModelShapes",
    "RequestCosts",
    "decode_context",
    "decode_step_seconds",
    "encoder_activation_bytes",
    "encoder_flops_per_audio_second",
    "encoder_flops_per_frame",
    "fastconformer_params",
    "iteration_seconds",
    "kv_bytes_per_request",
    "kv_bytes_per_token",
    "max_rate",
    "memory_plan",
    "output_tokens",
    "padding_overhead",
    "prefill_flops_per_audio_second",
    "prefill_flops_per_request",
    "prompt_tokens",
    "qwen3_non_embedding_params",
    "request_costs",
    "requests_in_flight",
    "reserved_output_len",
    "weight_bytes_per_step",
    "DOC",
    "NOTE",
    "EXPORT_FLAGS",
    "GpuDefaults",
    "Prediction",
    "defaults_for_checkpoint",
    "defaults_table",
    "derive_gpu_defaults",
    "main",
    "max_input_len",
    "predict",
    "predictions_table",
    "record",
]

DOC = "docs/gpu-throughput-model.md"
NOTE = f"a MODEL, not a measurement ({DOC})"


# ------------------------------------------------------------------------------------------
# Defaults and predictions
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuDefaults:
    """The gpu profile's serving settings."""

    llm_max_batch: int  # TensorRT-LLM max_batch_size (and prompt-table slots)
    max_num_tokens: int  # TensorRT-LLM tokens per iteration (prefill + decode)
    kv_cache_free_gpu_mem_fraction: float
    encoder_max_batch: int  # encoder/projector plans' max batch (= every Triton model's max_batch_size)
    encoder_opt_batch: int
    encoder_instances: int  # also the preprocessor's instances (--instances)
    max_inflight: int  # the BLS models' worker threads


#: The ``canary-triton export`` option each default fills.
EXPORT_FLAGS = {
    "llm_max_batch": "--llm-max-batch",
    "max_num_tokens": "--max-num-tokens",
    "kv_cache_free_gpu_mem_fraction": "--kv-cache-fraction",
    "encoder_max_batch": "--max-batch",
    "encoder_opt_batch": "--opt-batch",
    "encoder_instances": "--instances",
    "max_inflight": "--max-inflight",
}


def _pow2(x: float) -> int:
    """The power of two nearest ``x`` in log scale (at least 1)."""
    return 1 << max(0, round(math.log2(max(x, 1.0))))


def _pow2_ceil(x: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(x, 1.0))))


def max_input_len(shapes: ModelShapes) -> int:
    """The engines' max_input_len, as the export builds them (``LlmEngineOptions.max_input_len``)."""
    return C.llm_max_input_len(shapes.max_table_rows)


def derive_gpu_defaults(
    shapes: ModelShapes, gpu: GpuSpec = GPUS[DEFAULT_GPU], a: Assumptions = Assumptions()
) -> GpuDefaults:
    """The settings the model proposes for ``gpu`` (docs/gpu-throughput-model.md, "Defaults"):

    - encoder opt batch: the power of two nearest ``encoder_gemm_rows`` / frames of a typical
      clip; max batch ``encoder_max_over_opt`` times that;
    - encoder instances: the encoder's mean busy share at the target, rounded up, plus one, so a
      batch of one bucket need not wait behind another's;
    - TensorRT-LLM max batch: Little's law at the target rate (rounded up to ``llm_batch_step``),
      at least ``llm_batch_floor``, at most what the worst-case KV pool holds at the typical
      reservation; if the target cannot be reached at any batch, what the pool holds;
    - kv fraction: :func:`memory_plan`;
    - max_num_tokens: ``iteration_headroom`` x the tokens of one iteration at the operating rate
      (new prompts + one per sequence), at least the longest prompt plus a full decode batch
      (chunked context is off: a prompt is prefilled in one iteration), as a power of two;
    - BLS max_inflight: the LLM's max batch (every sequence it may hold has a forwarding thread).
    """
    rows = shapes.table_rows(a.typical_clip_seconds)
    opt = _pow2(a.encoder_gemm_rows / max(rows, 1))
    enc_max = opt * a.encoder_max_over_opt
    costs = request_costs(shapes, gpu, a)
    target_rate = a.target_rtfx / a.typical_clip_seconds
    instances = max(1, math.ceil(target_rate * costs.encoder_s)) + 1
    # the pool for a floor-sized batch sets the kv fraction (the table's size barely depends on it)
    mem = memory_plan(shapes, gpu, a, enc_max, instances, a.llm_batch_floor)
    per_request = kv_bytes_per_request(shapes, a.typical_clip_seconds) / GB
    fits = int(mem.kv_pool_gb // per_request) if per_request > 0 else a.llm_batch_floor
    need = requests_in_flight(costs, target_rate)
    step = a.llm_batch_step
    if need is None:
        want = fits
    else:
        want = a.llm_batch_floor if need <= a.llm_batch_floor else math.ceil(need / step) * step
    batch = max(a.llm_batch_floor, min(want, fits // step * step if fits >= step else fits))
    rate = min(target_rate, max_rate(costs, batch))
    t = iteration_seconds(costs, rate) or costs.weights_s
    per_iteration = rate * t * prompt_tokens(shapes, a.typical_clip_seconds) + batch
    tokens = _pow2_ceil(max(a.iteration_headroom * per_iteration, max_input_len(shapes) + batch))
    return GpuDefaults(
        llm_max_batch=batch,
        max_num_tokens=tokens,
        kv_cache_free_gpu_mem_fraction=mem.kv_fraction,
        encoder_max_batch=enc_max,
        encoder_opt_batch=opt,
        encoder_instances=instances,
        max_inflight=batch,
    )


def defaults_for_checkpoint(
    checkpoint, llm_dir=None, gpu_key: str = DEFAULT_GPU, a: Assumptions = Assumptions()
) -> GpuDefaults:
    """:func:`derive_gpu_defaults` for a checkpoint folder (its configs and tokenizer; no weights)."""
    if gpu_key not in GPUS:
        raise ValueError(f"--gpu-model must be one of {', '.join(GPUS)}, got {gpu_key!r}")
    return derive_gpu_defaults(ModelShapes.from_checkpoint(inspect_checkpoint(checkpoint, llm_dir)), GPUS[gpu_key], a)


@dataclass(frozen=True)
class Prediction:
    """What the model predicts for one GPU and one set of settings (NOT measured)."""

    gpu: str
    target_rtfx: float
    encoder_gflop_per_audio_s: float
    prefill_gflop_per_audio_s: float
    rtfx_upper_bound: float  # the LLM always holding llm_max_batch sequences
    target_reachable: bool
    encoder_share: float  # of the GPU's time at the upper bound
    prefill_share: float
    decode_share: float  # weights + KV reads of the decode steps
    in_flight_at_target: float | None  # Little's law; None: not reachable at any batch
    iteration_ms_at_target: float | None
    decode_step_ms: float  # at llm_max_batch, typical context
    decode_tokens_per_s: float  # at llm_max_batch
    decode_tokens_per_s_needed: float  # at the target
    kv_bytes_per_token: int
    kv_mb_typical_request: float  # prompt + reserved output (guaranteed_no_evict)
    kv_mb_longest_request: float  # a 40 s clip
    kv_pool_gb: float  # worst load order
    kv_requests_typical: int  # typical requests the pool holds
    kv_requests_longest: int
    encoder_activations_gb: float
    prompt_table_gb: float


def predict(shapes: ModelShapes, gpu: GpuSpec, a: Assumptions, settings: GpuDefaults) -> Prediction:
    """The model's figures for ``settings`` (the derived defaults, or what was given instead)."""
    costs = request_costs(shapes, gpu, a)
    batch = settings.llm_max_batch
    rate_max = max_rate(costs, batch)
    target_rate = a.target_rtfx / a.typical_clip_seconds
    enc, pre = rate_max * costs.encoder_s, rate_max * costs.prefill_s
    mem = memory_plan(
        shapes,
        gpu,
        a,
        settings.encoder_max_batch,
        settings.encoder_instances,
        batch,
        settings.kv_cache_free_gpu_mem_fraction,
    )
    step = decode_step_seconds(shapes, gpu, a, batch, decode_context(shapes, a))
    t = iteration_seconds(costs, target_rate)
    typical = kv_bytes_per_request(shapes, a.typical_clip_seconds)
    longest = kv_bytes_per_request(shapes, C.MAX_AUDIO_SECONDS)
    return Prediction(
        gpu=gpu.name,
        target_rtfx=a.target_rtfx,
        encoder_gflop_per_audio_s=encoder_flops_per_audio_second(shapes, a) / 1e9,
        prefill_gflop_per_audio_s=prefill_flops_per_audio_second(shapes, a) / 1e9,
        rtfx_upper_bound=rate_max * a.typical_clip_seconds,
        target_reachable=rate_max >= target_rate,
        encoder_share=enc,
        prefill_share=pre,
        decode_share=1.0 - enc - pre,
        in_flight_at_target=requests_in_flight(costs, target_rate),
        iteration_ms_at_target=None if t is None else t * 1e3,
        decode_step_ms=step * 1e3,
        decode_tokens_per_s=batch / step,
        decode_tokens_per_s_needed=a.target_rtfx * a.transcript_tokens_per_audio_second,
        kv_bytes_per_token=kv_bytes_per_token(shapes),
        kv_mb_typical_request=typical / 1e6,
        kv_mb_longest_request=longest / 1e6,
        kv_pool_gb=mem.kv_pool_gb,
        kv_requests_typical=int(mem.kv_pool_gb * GB // typical),
        kv_requests_longest=int(mem.kv_pool_gb * GB // longest),
        encoder_activations_gb=mem.encoder_activations_gb,
        prompt_table_gb=mem.prompt_table_gb,
    )


def record(
    shapes: ModelShapes, gpu_key: str, a: Assumptions, used: GpuDefaults, from_model: Sequence[str]
) -> dict[str, Any]:
    """What an export writes (``export.json`` / ``engine_build.json`` ``throughput_model``)."""
    gpu = GPUS[gpu_key]
    return {
        "note": NOTE,
        "gpu": gpu_key,
        "gpu_spec": asdict(gpu),
        "assumptions": asdict(a),
        SHAPES: asdict(shapes),
        "derived_defaults": asdict(derive_gpu_defaults(shapes, gpu, a)),
        "used": asdict(used),
        "from_model": {EXPORT_FLAGS[k]: getattr(used, k) for k in from_model},
        "predictions": asdict(predict(shapes, gpu, a, used)),
    }


# ------------------------------------------------------------------------------------------
# The docs page's tables
# ------------------------------------------------------------------------------------------
def _g(x: float, digits: int = 3) -> str:
    """A figure rounded to ``digits`` significant digits, with thousands separators."""
    if x == 0:
        return "0"
    rounded = round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{rounded:,.0f}" if abs(rounded) >= 100 else f"{rounded:g}"


def defaults_table(shapes: ModelShapes, a: Assumptions = Assumptions()) -> str:
    rows = {k: [str(getattr(derive_gpu_defaults(shapes, g, a), k)) for g in GPUS.values()] for k in EXPORT_FLAGS}
    lines = [
        "| setting (`canary-triton export` option) | " + " | ".join(g.name for g in GPUS.values()) + " |",
        "|---|" + "---|" * len(GPUS),
    ]
    lines += [f"| `{k}` (`{EXPORT_FLAGS[k]}`) | " + " | ".join(v) + " |" for k, v in rows.items()]
    return "\n".join(lines) + "\n"


PREDICTION_ROWS = (
    ("encoder_gflop_per_audio_s", "encoder + projector GFLOP per audio second (bucket padding included)"),
    ("prefill_gflop_per_audio_s", "prefill GFLOP per audio second"),
    ("rtfx_upper_bound", "RTFx upper bound at the default max batch"),
    ("target_reachable", "target RTFx reachable at the assumed efficiencies"),
    ("encoder_share", "GPU share at that bound: encoder"),
    ("prefill_share", "GPU share: prefill"),
    ("decode_share", "GPU share: decode (weights + KV reads)"),
    ("in_flight_at_target", "requests in flight in the LLM at the target (Little's law)"),
    ("iteration_ms_at_target", "LLM iteration at the target, ms"),
    ("decode_step_ms", "decode step at the default max batch, ms"),
    ("decode_tokens_per_s", "decode tokens/s at the default max batch"),
    ("decode_tokens_per_s_needed", "decode tokens/s the target needs"),
    ("kv_bytes_per_token", "KV bytes per token"),
    ("kv_mb_typical_request", "KV MB per typical request (prompt + reserved output)"),
    ("kv_mb_longest_request", "KV MB per 40 s request"),
    ("kv_pool_gb", "ASR KV pool, GB (worst load order)"),
    ("kv_requests_typical", "typical requests the pool holds"),
    ("kv_requests_longest", "40 s requests the pool holds"),
    ("encoder_activations_gb", "encoder activations reserved, GB (all instances, max batch, 40 s)"),
    ("prompt_table_gb", "prompt table per engine, GB"),
)


def _figure(key: str, value: Any) -> str:
    if value is None:
        return "not reachable"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_share"):
        return f"{value:.0%}"
    if isinstance(value, int):
        return f"{value:,}"
    return _g(float(value))


def predictions_table(shapes: ModelShapes, a: Assumptions = Assumptions()) -> str:
    preds = [predict(shapes, g, a, derive_gpu_defaults(shapes, g, a)) for g in GPUS.values()]
    lines = [
        "| figure (predicted, not measured) | " + " | ".join(p.gpu for p in preds) + " |",
        "|---|" + "---|" * len(preds),
    ]
    lines += [
        f"| {label} | " + " | ".join(_figure(key, getattr(p, key)) for p in preds) + " |"
        for key, label in PREDICTION_ROWS
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m canary_triton.gpu.throughput",
        description=f"Print the throughput model's defaults and predictions for a checkpoint ({NOTE}).",
    )
    p.add_argument("checkpoint")
    p.add_argument("--llm-dir")
    args = p.parse_args(argv)
    shapes = ModelShapes.from_checkpoint(inspect_checkpoint(args.checkpoint, args.llm_dir))
    print(defaults_table(shapes))
    print(predictions_table(shapes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
