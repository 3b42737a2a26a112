"""The GPU throughput model as code: a MODEL, not a measurement (docs/gpu-throughput-model.md).

Arithmetic on the checkpoint's shapes (every dimension read from its configs) and a GPU's
data-sheet peaks, with the efficiencies and traffic stated in :class:`Assumptions`. It sizes the
gpu profile's defaults (:func:`derive_gpu_defaults`, applied by ``canary-triton export --profile
gpu`` unless an option is given) and predicts what the first measurement should confirm or refute
(:func:`predict`). Nothing here was measured: no GPU was available to this project.

Library only: no torch or TensorRT import. ``python -m canary_triton.gpu.throughput CHECKPOINT``
prints the tables of the docs page for a checkpoint.

Units: FLOP, bytes, seconds; GB = 1e9 bytes (as the data sheets).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest, section
from canary_triton.checkpoint.reader import checkpoint_tokenizer, inspect_checkpoint
from canary_triton.errors import CheckpointError

BF16_BYTES = 2
GB = 1e9
DOC = "docs/gpu-throughput-model.md"
NOTE = f"a MODEL, not a measurement ({DOC})"
#: The key of the recorded ModelShapes in :func:`record`'s output (export.json ``throughput_model``).
SHAPES = "shapes"


@dataclass(frozen=True)
class GpuSpec:
    """Data-sheet peaks of one GPU (dense bf16 tensor-core FLOP/s, HBM bandwidth, memory)."""

    name: str
    bf16_dense_tflops: float
    hbm_tb_per_s: float
    memory_gb: float


H100_SXM = GpuSpec("H100 SXM", 989.0, 3.35, 80.0)
H200 = GpuSpec("H200", 989.0, 4.8, 141.0)
GPUS = {"h100": H100_SXM, "h200": H200}
#: The GPU the defaults are sized for unless told another (the smaller of the two: its defaults fit an H200).
DEFAULT_GPU = "h100"


@dataclass(frozen=True)
class Assumptions:
    """What the model assumes (replace each with a measured number as soon as one exists)."""

    target_rtfx: float = 5000.0  # the project's goal on one GPU
    gemm_efficiency: float = 0.4  # share of peak FLOP/s sustained by large GEMMs (encoder, prefill)
    decode_bandwidth_efficiency: float = 0.6  # share of HBM bandwidth sustained by decode steps
    transcript_tokens_per_audio_second: float = 3.0  # read speech, Qwen3 tokenizer
    typical_clip_seconds: float = 10.0  # the clip length traffic is sized for
    #: rows (clips x encoder frames) per encoder GEMM for the assumed efficiency; sets the opt batch
    encoder_gemm_rows: int = 2048
    encoder_max_over_opt: int = 4  # the encoder plans' max batch over their opt batch (bursts)
    #: mel buckets (the preprocessor's padding): a clip computes half a bucket more on average
    mel_bucket_seconds: float = C.DEFAULT_MEL_BUCKET_SECONDS
    #: GPU memory neither weights, KV cache nor the encoder's activations may take: CUDA contexts of
    #: tritonserver and the Python stubs, TensorRT-LLM's runtime buffers (max_num_tokens activations)
    runtime_reserve_gb: float = 4.0
    llm_batch_floor: int = 16  # smallest TensorRT-LLM max batch proposed
    llm_batch_step: int = 64  # the TensorRT-LLM max batch is rounded up to a multiple of this
    iteration_headroom: float = 2.0  # max_num_tokens over the steady-state tokens per iteration (bursts)
    kv_fraction_step: float = 0.05  # kv_cache_free_gpu_mem_fraction is a multiple of this

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(f"assumption {f.name} must be > 0, got {getattr(self, f.name)}")
        for name in ("gemm_efficiency", "decode_bandwidth_efficiency"):
            if getattr(self, name) > 1:
                raise ValueError(f"assumption {name} must be at most 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ModelShapes:
    """What the model needs of a checkpoint, read from its configs (and its tokenizer's prompt)."""

    n_mels: int
    mel_frames_per_audio_second: float
    frames_per_audio_second: float  # encoder frames (= prompt-table rows) per second of audio
    max_table_rows: int  # rows of the longest clip's table (C.max_table_rows)
    encoder_layers: int
    encoder_dim: int
    encoder_heads: int
    encoder_params: int  # subsampling + conformer layers (FLOPs per frame ~ 2 x this)
    subsampling_channels: int
    projector_params: int
    llm_layers: int
    llm_hidden: int
    llm_heads: int
    llm_kv_heads: int
    llm_head_dim: int
    llm_non_embedding_params: int
    vocab_rows: int
    lm_head_params: int  # the logits' matrix (the tied embedding for Qwen3-1.7B)
    embedding_params: int
    text_prompt_tokens: int  # the ASR prompt's ids besides the audio placeholder
    max_position_embeddings: int

    @classmethod
    def from_configs(
        cls,
        salm_cfg: Mapping[str, Any],
        llm_cfg: Mapping[str, Any],
        text_prompt_tokens: int,
        mel: C.MelParams | None = None,
    ) -> "ModelShapes":
        """From NeMo's SALM config (``perception``) and the Qwen3 ``config.json``."""
        p = salm_cfg["perception"]
        enc = p["encoder"]
        mel = mel or C.MelParams.from_config(p["preprocessor"])
        sub = C.Subsampling.from_config(enc)
        d, layers = int(enc["d_model"]), int(enc["n_layers"])
        hidden = int(llm_cfg["hidden_size"])
        heads = int(llm_cfg["num_attention_heads"])
        kv_heads = int(llm_cfg.get("num_key_value_heads", heads))
        head_dim = int(llm_cfg.get("head_dim") or hidden // heads)
        vocab = int(llm_cfg["vocab_size"])
        tied = bool(llm_cfg.get("tie_word_embeddings", False))
        return cls(
            n_mels=mel.n_mels,
            mel_frames_per_audio_second=mel.sample_rate / mel.hop_length,
            frames_per_audio_second=mel.sample_rate / mel.hop_length / sub.factor,
            max_table_rows=C.max_table_rows(mel, sub),
            encoder_layers=layers,
            encoder_dim=d,
            encoder_heads=int(enc.get("n_heads", 8)),
            encoder_params=fastconformer_params(enc, mel.n_mels),
            subsampling_channels=int(enc.get("subsampling_conv_channels", 256)),
            projector_params=d * hidden + hidden,
            llm_layers=int(llm_cfg["num_hidden_layers"]),
            llm_hidden=hidden,
            llm_heads=heads,
            llm_kv_heads=kv_heads,
            llm_head_dim=head_dim,
            llm_non_embedding_params=qwen3_non_embedding_params(llm_cfg),
            vocab_rows=vocab,
            lm_head_params=vocab * hidden,
            embedding_params=vocab * hidden * (1 if tied else 2),
            text_prompt_tokens=int(text_prompt_tokens),
            max_position_embeddings=int(llm_cfg.get("max_position_embeddings", 0)),
        )

    @classmethod
    def from_checkpoint(cls, info) -> "ModelShapes":
        """From a :class:`canary_triton.checkpoint.reader.CheckpointInfo` (configs + tokenizer, no weights)."""
        prompt = checkpoint_tokenizer(info).asr_prompt_ids()
        return cls.from_configs(info.cfg, info.llm_cfg, len(prompt) - 1, info.mel)

    @classmethod
    def from_manifest(cls, manifest: ExportManifest) -> "ModelShapes":
        """The shapes a gpu export recorded (``export.json`` ``throughput_model``, :func:`record`'s ``shapes``)."""
        if manifest.throughput_model is None:
            raise CheckpointError("the export holds no throughput model: it is not a gpu export")
        return section(cls, manifest.throughput_model.get(SHAPES), f"throughput_model.{SHAPES}")

    def table_rows(self, seconds: float) -> int:
        """Prompt-table rows the LLM reads for a clip (its valid encoder frames)."""
        return int(round(seconds * self.frames_per_audio_second))


def _conv_out(length: int, repeats: int) -> int:
    for _ in range(repeats):
        length = (length + 2 - 3) // 2 + 1  # kernel 3, stride 2, padding 1 (C.num_encoder_frames)
    return length


def fastconformer_params(enc: Mapping[str, Any], n_mels: int) -> int:
    """Parameters of NeMo's ConformerEncoder from its config: the subsampling convolutions and
    their output linear, then per layer two feed-forwards, rel-pos attention (q/k/v/out with
    biases, linear_pos without, pos_bias_u/v), the convolution module and five layer norms."""
    sub = C.Subsampling.from_config(enc)
    d, layers = int(enc["d_model"]), int(enc["n_layers"])
    ff = d * int(enc.get("ff_expansion_factor", 4))
    c = int(enc.get("subsampling_conv_channels", 256))
    k = int(enc.get("conv_kernel_size", 31))
    if enc.get("subsampling", "dw_striding") == "dw_striding":
        convs = (c * 9 + c) + (sub.repeats - 1) * ((c * 9 + c) + (c * c + c))
    else:  # striding: full 3x3 convolutions
        convs = (c * 9 + c) + (sub.repeats - 1) * (c * c * 9 + c)
    pre = convs + c * _conv_out(n_mels, sub.repeats) * d + d
    feed_forward = 2 * (d * ff + ff + ff * d + d)
    attention = 4 * (d * d + d) + d * d + 2 * d  # pos_bias_u, pos_bias_v: heads x d_k = d each
    conv = (d * 2 * d + 2 * d) + (d * k + d) + 2 * d + (d * d + d)
    norms = 5 * 2 * d
    return pre + layers * (feed_forward + attention + conv + norms)


def qwen3_non_embedding_params(llm_cfg: Mapping[str, Any]) -> int:
    """Qwen3 decoder parameters besides the token embedding and the logits' matrix."""
    h = int(llm_cfg["hidden_size"])
    heads = int(llm_cfg["num_attention_heads"])
    kv = int(llm_cfg.get("num_key_value_heads", heads))
    hd = int(llm_cfg.get("head_dim") or h // heads)
    inter = int(llm_cfg["intermediate_size"])
    bias = bool(llm_cfg.get("attention_bias", False))
    attention = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 2 * hd  # q, k, v, o; q_norm, k_norm
    if bias:
        attention += heads * hd + 2 * kv * hd + h
    return int(llm_cfg["num_hidden_layers"]) * (attention + 3 * h * inter + 2 * h) + h


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
    conv0 = shapes.subsampling_channels * _conv_out(mel_frames, 1) * _conv_out(shapes.n_mels, 1)
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
