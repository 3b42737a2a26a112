"""LoRA-merged Qwen3 -> TensorRT-LLM engine for the ``tensorrtllm`` Triton backend (GPU profile).

NOT RUN IN CI: TensorRT-LLM cannot be installed on the CPU machines this project is tested on.
Targets TensorRT-LLM >= 1.0.0 (the TensorRT engine flow, model type ``qwen3`` from
``QWenForCausalLM.from_hugging_face``; dense Qwen3 landed in PR #5650, first in 1.0.0rc3) as
shipped in NVIDIA's ``tritonserver:<release>-trtllm-python-py3`` container (see Dockerfile.triton).

The engine gets a prompt-embedding table sized for ``max_batch`` x the largest table (501 rows for
40 s: the encoder's padded output, C.max_table_rows), a paged KV cache, packed
(padding-free) input and the attention plugin: what in-flight batching in the ``tensorrtllm``
backend needs. Lengths come from the model contract.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from canary_triton import contract as C
from canary_triton.errors import CanaryTritonError
from canary_triton.export.tensorrt_engine import WHERE_IT_RUNS

# TensorRT-LLM is imported by the build alone (it cannot be installed on the CPU machines).

SUPPORTED_WEIGHT_QUANT = ("none", "int8", "int4")
#: Why fp8 is not offered: TensorRT-LLM's FP8 QuantConfig needs ModelOpt-quantised weights (scales
#: from a calibration pass, QWenForCausalLM.quantize), which this export does not run;
#: from_hugging_face on the bf16 weights would leave the scale tensors missing.
FP8_REFUSAL = (
    "weight_quant fp8 is not supported: it needs ModelOpt quantisation with calibration "
    "(QWenForCausalLM.quantize), which this export does not run; use int8 or int4 (weight-only)"
)


def require_tensorrt_llm():
    try:
        import tensorrt_llm  # noqa: F401
    except Exception as e:
        raise CanaryTritonError(
            f"TensorRT-LLM is not importable here ({type(e).__name__}: {e}); {WHERE_IT_RUNS}"
        ) from None
    return tensorrt_llm


@dataclass(frozen=True)
class LlmEngineOptions:
    dtype: str = "bfloat16"  # the prompt table must have this dtype too
    max_batch: int = 64
    max_audio_frames: int = C.max_table_rows()  # table rows per request (501: 40 s, padded)
    prompt_tokens: int = C.ENGINE_PROMPT_TOKENS  # room for the text part of the prompt
    max_new_tokens: int = C.MAX_NEW_TOKENS_LIMIT
    max_num_tokens: int = 8192
    weight_quant: str = "none"  # none | int8 | int4 (weight-only)

    def __post_init__(self) -> None:
        if self.dtype not in ("bfloat16", "float16"):
            raise ValueError(f"dtype must be bfloat16 or float16, got {self.dtype!r}")
        if self.weight_quant == "fp8":
            raise ValueError(FP8_REFUSAL)
        if self.weight_quant not in SUPPORTED_WEIGHT_QUANT:
            raise ValueError(f"weight_quant must be one of {SUPPORTED_WEIGHT_QUANT}, got {self.weight_quant!r}")
        if self.max_num_tokens < self.max_input_len:  # chunked context is off: a prompt is prefilled at once
            raise ValueError(
                f"--max-num-tokens {self.max_num_tokens} is below the longest prompt "
                f"({self.max_input_len} tokens); it must be at least that"
            )

    @property
    def max_input_len(self) -> int:
        """ASR prompts (text + audio rows) and LLM-mode prompts (the base engine) both fit."""
        return C.llm_max_input_len(self.max_audio_frames, self.prompt_tokens)

    @property
    def max_seq_len(self) -> int:
        return self.max_input_len + self.max_new_tokens

    @property
    def max_prompt_embedding_table_size(self) -> int:
        return self.max_batch * self.max_audio_frames


def build_config_kwargs(opts: LlmEngineOptions) -> dict[str, object]:
    """``tensorrt_llm.BuildConfig`` arguments: lengths from the contract, the table for max batch."""
    return {
        "max_batch_size": opts.max_batch,
        "max_input_len": opts.max_input_len,
        "max_seq_len": opts.max_seq_len,
        "max_num_tokens": opts.max_num_tokens,
        "max_prompt_embedding_table_size": opts.max_prompt_embedding_table_size,
        "strongly_typed": True,
    }


PLUGIN_SETTINGS = {"remove_input_padding": True, "paged_kv_cache": True, "use_paged_context_fmha": True}


def trtllm_build_command(checkpoint_dir: str | Path, engine_dir: str | Path, opts: LlmEngineOptions) -> list[str]:
    """The ``trtllm-build`` command line equivalent to :func:`build_llm_engine` (for the record and
    for building by hand from a ``convert_checkpoint.py`` output)."""
    k = build_config_kwargs(opts)
    return [
        "trtllm-build",
        "--checkpoint_dir",
        str(checkpoint_dir),
        "--output_dir",
        str(engine_dir),
        "--max_batch_size",
        str(k["max_batch_size"]),
        "--max_input_len",
        str(k["max_input_len"]),
        "--max_seq_len",
        str(k["max_seq_len"]),
        "--max_num_tokens",
        str(k["max_num_tokens"]),
        "--max_prompt_embedding_table_size",
        str(k["max_prompt_embedding_table_size"]),
        "--gemm_plugin",
        opts.dtype,
        "--remove_input_padding",
        "enable",
        "--kv_cache_type",
        "paged",
        "--use_paged_context_fmha",
        "enable",
    ]


QUANT_ALGO = {"none": None, "int8": "W8A16", "int4": "W4A16"}  # tensorrt_llm.quantization.QuantAlgo names


def llm_build_settings(hf_dir: str, engine_dir: str, opts: LlmEngineOptions) -> dict[str, object]:
    """One engine's build settings as JSON: exactly what :func:`build_llm_engine` passes."""
    return {
        "hf_dir": hf_dir,
        "engine_dir": engine_dir,
        "options": asdict(opts),
        "dtype": opts.dtype,
        "quant_algo": QUANT_ALGO[opts.weight_quant],
        "build_config": build_config_kwargs(opts),
        "plugin_config": {"gemm_plugin": opts.dtype, **PLUGIN_SETTINGS},
        "equivalent_command": trtllm_build_command("<converted checkpoint>", engine_dir, opts),
    }


def build_llm_engine(hf_dir: str | Path, out_dir: str | Path, opts: LlmEngineOptions) -> Path:
    """Convert the merged HF Qwen3 folder and build ``rank0.engine`` + ``config.json`` in ``out_dir``."""
    tllm = require_tensorrt_llm()
    from tensorrt_llm.models import QWenForCausalLM
    from tensorrt_llm.models.modeling_utils import QuantConfig
    from tensorrt_llm.quantization import QuantAlgo

    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    model_type = json.loads((hf_dir / "config.json").read_text()).get("model_type")
    if model_type != "qwen3":
        raise CanaryTritonError(f"{hf_dir} holds a {model_type!r} model; the engine build expects qwen3")
    algo = QUANT_ALGO[opts.weight_quant]
    quant = QuantConfig() if algo is None else QuantConfig(quant_algo=getattr(QuantAlgo, algo))
    model = QWenForCausalLM.from_hugging_face(str(hf_dir), dtype=opts.dtype, quant_config=quant)
    build_config = tllm.BuildConfig(**build_config_kwargs(opts))
    build_config.plugin_config.gemm_plugin = opts.dtype  # the Qwen README's accuracy advice
    for key, value in PLUGIN_SETTINGS.items():
        setattr(build_config.plugin_config, key, value)
    engine = tllm.build(model, build_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine.save(str(out_dir))
    (out_dir / "canary_build_options.json").write_text(
        json.dumps(
            {
                "options": asdict(opts),
                "equivalent_command": trtllm_build_command("<converted checkpoint>", out_dir, opts),
            },
            indent=2,
        )
    )
    return out_dir
