"""What ``canary-triton export`` runs with: the export's options, one frozen dataclass holding the
option classes of each part (the encoder engines, the TensorRT-LLM engines, the repository).

Light on purpose (no torch): the CLI builds these before it imports the export pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canary_triton.export.repository import RepositoryOptions
from canary_triton.export.tensorrt_engine import DEFAULT_GPU_ARCH, EngineOptions
from canary_triton.export.trtllm_engine import LlmEngineOptions
from canary_triton.gpu.throughput import DEFAULT_GPU, GPUS
from canary_triton.runtime.cpu_profile import (
    PrecisionChoice,
    check_encoder_precision,
    choose_encoder_precision,
    choose_precision,
)

PROFILES = ("cpu", "gpu")


@dataclass(frozen=True)
class ExportOptions:
    profile: str = "cpu"
    llm_dtype: str = "auto"  # auto: the CPU profile's precision (below) for cpu, bfloat16 for gpu
    #: CPU profile: auto (bf16 where the CPU has native bf16 units, else fp32; see
    #: canary_triton.runtime.cpu_profile), fp32 (exact parity with NeMo fp32) or bf16.
    precision: str = "auto"
    require_native_precision: bool = False  # bf16 without native bf16 units: error, not a warning
    #: CPU profile: the served encoder's precision: fp32 (exact parity) or int8 (its MatMuls
    #: quantized: about twice as fast on CPU, bounded by WER; see tests/test_encoder_int8.py).
    cpu_encoder_precision: str = "auto"  # auto: int8 with a bf16 LLM, fp32 with an fp32 one
    engine: EngineOptions = field(default_factory=EngineOptions)
    llm_engine: LlmEngineOptions = field(default_factory=LlmEngineOptions)
    repository: RepositoryOptions = field(default_factory=RepositoryOptions)
    parity: bool = True
    dry_run: bool = False  # gpu: write the repository, export.json and engine_build.json; build nothing
    gpu_arch: str = DEFAULT_GPU_ARCH  # dry run: the architecture the plans are named for
    gpu_model: str = DEFAULT_GPU  # gpu: the data sheet the throughput model uses (gpu.throughput.GPUS)
    #: gpu: the gpu.throughput.GpuDefaults fields whose values came from the model (not given explicitly)
    sized_by_model: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if self.llm_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"llm_dtype must be auto, float32, bfloat16 or float16, got {self.llm_dtype!r}")
        check_encoder_precision(self.cpu_encoder_precision)
        if self.cpu_encoder_precision == "int8" and self.profile != "cpu":
            raise ValueError(
                f"--cpu-encoder-precision {self.cpu_encoder_precision} is for the cpu profile; the gpu profile "
                "builds its TensorRT encoder from the fp32 ONNX graph in --precision"
            )
        if self.dry_run and self.profile != "gpu":
            raise ValueError(f"--dry-run renders the gpu profile only (--profile gpu), got --profile {self.profile}")
        if not (self.gpu_arch.startswith("sm") and self.gpu_arch[2:].isdigit() and len(self.gpu_arch) >= 4):
            raise ValueError(f"--gpu-arch must look like sm80, sm90 or sm100, got {self.gpu_arch!r}")
        if self.gpu_model not in GPUS:
            raise ValueError(f"--gpu-model must be one of {', '.join(GPUS)}, got {self.gpu_model!r}")
        if self.profile == "gpu" and self.repository.max_batch > self.engine.max_batch:
            # The tensorrt backend refuses a plan whose max batch is below the config's max_batch_size.
            raise ValueError(
                f"--triton-max-batch {self.repository.max_batch} exceeds the encoder engines' "
                f"--max-batch {self.engine.max_batch}; it must be at most that (unset, it follows --max-batch)"
            )

    def precision_choice(self):
        """The CPU profile's precision (cpu_profile.PrecisionChoice), resolved on this machine."""
        if self.profile != "cpu":
            return PrecisionChoice("bf16", "gpu profile: TensorRT-LLM engines in bf16")
        if self.llm_dtype != "auto":
            return PrecisionChoice(
                {"float32": "fp32", "bfloat16": "bf16"}.get(self.llm_dtype, self.llm_dtype),
                f"llm_dtype {self.llm_dtype} given explicitly",
            )
        return choose_precision(self.precision, self.require_native_precision)

    def encoder_precision_choice(self, llm_choice=None):
        """The CPU profile's served encoder precision (cpu_profile.choose_encoder_precision)."""
        if self.profile != "cpu":
            return PrecisionChoice(self.engine.precision, "gpu profile: the TensorRT encoder in --precision")
        return choose_encoder_precision(self.cpu_encoder_precision, (llm_choice or self.precision_choice()).precision)

    def llm_dtype_name(self, choice=None) -> str:
        """The torch dtype the Qwen3 weights are written in (``float32``, ``bfloat16``, ``float16``)."""
        if self.llm_dtype != "auto":
            return self.llm_dtype
        if self.profile != "cpu":
            return "bfloat16"
        return (choice or self.precision_choice()).torch_dtype_name
