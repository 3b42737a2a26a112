"""What the GPU throughput model assumes (docs/gpu-throughput-model.md): the GPUs' data-sheet
peaks and the efficiencies and traffic of :class:`Assumptions`. Nothing here was measured.

Units: FLOP, bytes, seconds; GB = 1e9 bytes (as the data sheets).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from canary_triton import contract as C

BF16_BYTES = 2
GB = 1e9


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
