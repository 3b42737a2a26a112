"""The GPU throughput model's costs: FLOPs, bytes and GPU seconds of one request (encoder,
prefill, decode), the in-flight batching arithmetic over them, and the memory plan (weights,
encoder activations, KV pool). Arithmetic on :class:`ModelShapes` and :class:`Assumptions`.

Units: FLOP, bytes, seconds; GB = 1e9 bytes (as the data sheets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from canary_triton import contract as C
from canary_triton.gpu.assumptions import BF16_BYTES, GB, Assumptions, GpuSpec
from canary_triton.gpu.model_shapes import ModelShapes, conv_out


# ------------------------------------------------------------------------------------------
# Costs
# ------------------------------------------------------------------------------------------
def encoder_flops_per_frame(shapes: ModelShapes, frames: int) -> float:
    """~2 FLOP per parameter per frame (the linear layers), plus rel-pos attention's scores,
    position scores (2T-1 positions) and weighted sum: ~8 x T x d per layer. The subsampling
    convolutions run at a higher time resolution but hold < 1 % of the FLOPs; not counted."""
    return 2.0 * shapes.encoder_params + shapes.encoder_layers * 8.0 * frames * shapes.encoder_dim


def padding_overhead(a: Assumptions) -> float:
    """Extra encoder frames from the mel buckets: half a bucket per clip on average."""
    return min(a.mel_bucket_seconds, C.MAX_AUDIO_SECONDS) / 2.0 / a.typical_clip_seconds


def encoder_flops_per_audio_second(shapes: ModelShapes, a: Assumptions = Assumptions()) -> float:
    """Encoder (+ projector) FLOPs per second of audio at the typical clip length, bucket padding included."""
    frames = shapes.table_rows(a.typical_clip_seconds)
    per_frame = encoder_flops_per_frame(shapes, frames) + 2.0 * shapes.projector_params
    return shapes.frames_per_audio_second * (1.0 + padding_overhead(a)) * per_frame


def prompt_tokens(shapes: ModelShapes, seconds: float) -> int:
    """Prefill length of one ASR request: the clip's table rows plus the prompt's text ids."""
    return shapes.table_rows(seconds) + shapes.text_prompt_tokens


def prefill_flops_per_request(shapes: ModelShapes, seconds: float) -> float:
    """2 FLOP per non-embedding parameter per prompt token, causal attention (mean context L/2:
    2 x L x heads x head_dim per token and layer), and the logits of the last position only."""
    n = prompt_tokens(shapes, seconds)
    attention = shapes.llm_layers * 2.0 * n * shapes.llm_heads * shapes.llm_head_dim
    return n * (2.0 * shapes.llm_non_embedding_params + attention) + 2.0 * shapes.lm_head_params


def prefill_flops_per_audio_second(shapes: ModelShapes, a: Assumptions = Assumptions()) -> float:
    return prefill_flops_per_request(shapes, a.typical_clip_seconds) / a.typical_clip_seconds


def kv_bytes_per_token(shapes: ModelShapes) -> int:
    """K and V of every layer, bf16."""
    return 2 * shapes.llm_layers * shapes.llm_kv_heads * shapes.llm_head_dim * BF16_BYTES


def output_tokens(a: Assumptions, seconds: float) -> float:
    return a.transcript_tokens_per_audio_second * seconds


def reserved_output_len(seconds: float, sample_rate: int = C.MelParams().sample_rate) -> int:
    """``request_output_len`` of an ASR request (the default max_new_tokens, capped by the
    hallucination guard): what TensorRT-LLM's guaranteed_no_evict scheduler reserves KV for."""
    return min(C.DEFAULT_MAX_NEW_TOKENS, C.output_token_cap(int(seconds * sample_rate), sample_rate))


def kv_bytes_per_request(shapes: ModelShapes, seconds: float) -> int:
    """KV blocks one ASR request holds under guaranteed_no_evict: prompt + reserved output."""
    return (prompt_tokens(shapes, seconds) + reserved_output_len(seconds)) * kv_bytes_per_token(shapes)


def decode_context(shapes: ModelShapes, a: Assumptions) -> float:
    """Mean context length while decoding the typical clip: prompt + half its transcript."""
    return prompt_tokens(shapes, a.typical_clip_seconds) + output_tokens(a, a.typical_clip_seconds) / 2.0


def weight_bytes_per_step(shapes: ModelShapes) -> float:
    """Bytes each decode step reads besides KV: the bf16 decoder weights and the logits' matrix."""
    return (shapes.llm_non_embedding_params + shapes.lm_head_params) * BF16_BYTES


def decode_step_seconds(shapes: ModelShapes, gpu: GpuSpec, a: Assumptions, batch: int, context: float) -> float:
    """One decode step of ``batch`` sequences of ``context`` tokens: memory-bound (weights once,
    every sequence's KV), unless its FLOPs (2 per parameter per sequence) take longer."""
    memory = (weight_bytes_per_step(shapes) + batch * context * kv_bytes_per_token(shapes)) / (
        gpu.hbm_tb_per_s * 1e12 * a.decode_bandwidth_efficiency
    )
    compute = batch * 2.0 * (shapes.llm_non_embedding_params + shapes.lm_head_params) / _flops(gpu, a)
    return max(memory, compute)


def _flops(gpu: GpuSpec, a: Assumptions) -> float:
    return gpu.bf16_dense_tflops * 1e12 * a.gemm_efficiency


@dataclass(frozen=True)
class RequestCosts:
    """GPU seconds of one typical request, and the weight read each LLM iteration costs."""

    encoder_s: float
    prefill_s: float
    decode_kv_s: float  # its KV reads over all its decode steps
    weights_s: float  # per iteration (shared by every sequence in it)
    output_tokens: float

    @property
    def per_request_s(self) -> float:
        return self.encoder_s + self.prefill_s + self.decode_kv_s


def request_costs(shapes: ModelShapes, gpu: GpuSpec, a: Assumptions) -> RequestCosts:
    s = a.typical_clip_seconds
    bw = gpu.hbm_tb_per_s * 1e12 * a.decode_bandwidth_efficiency
    n_out = output_tokens(a, s)
    return RequestCosts(
        encoder_s=encoder_flops_per_audio_second(shapes, a) * s / _flops(gpu, a),
        prefill_s=prefill_flops_per_request(shapes, s) / _flops(gpu, a),
        decode_kv_s=n_out * decode_context(shapes, a) * kv_bytes_per_token(shapes) / bw,
        weights_s=weight_bytes_per_step(shapes) / bw,
        output_tokens=n_out,
    )


def iteration_seconds(costs: RequestCosts, rate: float) -> float | None:
    """The LLM's iteration time at ``rate`` requests/s, the GPU shared with the encoder: in-flight
    batching runs iterations back to back, each reading the weights once, so
    ``t = weights + rate x t x per_request``, i.e. ``t = weights / (1 - rate x per_request)``.
    None when the GPU cannot keep up at any batch size (utilisation >= 1)."""
    load = rate * costs.per_request_s
    return costs.weights_s / (1.0 - load) if load < 1.0 else None


def requests_in_flight(costs: RequestCosts, rate: float) -> float | None:
    """Little's law: rate x time in the LLM (prefill iteration + one iteration per output token)."""
    t = iteration_seconds(costs, rate)
    return None if t is None else rate * (costs.output_tokens + 1.0) * t


def max_rate(costs: RequestCosts, batch: int) -> float:
    """Requests/s at which ``batch`` sequences are in flight (solving the two above for rate)."""
    return batch / ((costs.output_tokens + 1.0) * costs.weights_s + batch * costs.per_request_s)


# ------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------
def encoder_activation_bytes(shapes: ModelShapes, batch: int, seconds: float = C.MAX_AUDIO_SECONDS) -> float:
    """Peak activation memory of one encoder execution context (TensorRT allocates it for the
    profile's max shape at load): twice the largest bf16 tensor alive (an op's input and output),
    the largest being the first subsampling convolution's output (channels x T_mel/2 x n_mels/2)
    or rel-pos attention's position scores (heads x T x 2T)."""
    mel_frames = int(seconds * shapes.mel_frames_per_audio_second) + 1
    t = shapes.table_rows(seconds) + 1
    conv0 = shapes.subsampling_channels * conv_out(mel_frames, 1) * conv_out(shapes.n_mels, 1)
    scores = shapes.encoder_heads * t * (2 * t - 1)
    return 2.0 * batch * max(conv0, scores) * BF16_BYTES


@dataclass(frozen=True)
class MemoryPlan:
    weights_gb: float  # both LLM engines (ASR merged, LLM-mode base) + encoder + projector, bf16
    encoder_activations_gb: float  # every encoder instance at the plans' max batch and 40 s
    free_gb: float  # what the KV caches and the encoder's activations share
    kv_fraction: float
    kv_pool_gb: float  # the ASR engine's KV cache in the worst load order
    prompt_table_gb: float  # one engine's max_prompt_embedding_table_size rows, bf16


def memory_plan(
    shapes: ModelShapes,
    gpu: GpuSpec,
    a: Assumptions,
    encoder_max_batch: int,
    encoder_instances: int,
    llm_max_batch: int,
    kv_fraction: float | None = None,
) -> MemoryPlan:
    """Each ``tensorrtllm`` model (``llm`` and ``llm_base``) takes ``kv_fraction`` of the memory
    free when it loads; Triton loads models in no fixed order. Worst case for the encoder: both
    LLMs load first and leave ``(1-f)^2`` of the free memory. Worst case for ASR: it loads last,
    after the encoder, and gets ``f(1-f)`` of what the encoder left. ``f = 0.5`` maximises the
    latter; a lower ``f`` is proposed when the encoder's activations need more than ``(1-f)^2``."""
    llm_weights = 2 * weight_bytes_per_step(shapes)
    enc_weights = (shapes.encoder_params + shapes.projector_params) * BF16_BYTES
    weights = (llm_weights + enc_weights) / GB
    activations = encoder_instances * encoder_activation_bytes(shapes, encoder_max_batch) / GB
    free = gpu.memory_gb - weights - a.runtime_reserve_gb
    if kv_fraction is None:
        best = 1.0 - math.sqrt(activations / free) if 0 < activations < free else 0.0
        kv_fraction = max(a.kv_fraction_step, min(0.5, math.floor(best / a.kv_fraction_step) * a.kv_fraction_step))
    pool = kv_fraction * (1.0 - kv_fraction) * max(free - activations, 0.0)
    table = llm_max_batch * shapes.max_table_rows * shapes.llm_hidden * BF16_BYTES / GB
    return MemoryPlan(weights, activations, free, round(kv_fraction, 4), pool, table)
