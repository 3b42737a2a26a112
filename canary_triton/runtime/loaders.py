"""Loading an export's artifacts into the served pipeline: the tokenizer, the preprocessor,
the ONNX Runtime sessions, the Qwen3 weights and the ASR adapter (the Triton models call these;
tests call them directly too)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from canary_triton import contract as C
from canary_triton.artifacts import ADAPTER_FILE, ExportManifest
from canary_triton.checkpoint.tokenizer import Tokenizer, load_tokenizer
from canary_triton.errors import CheckpointError
from canary_triton.frontend.preprocess import Preprocessor
from canary_triton.runtime.onnx_session import OnnxEncoderProjector

# torch, transformers, safetensors and the modules built on torch (features, llm_runner,
# llm_batcher) are imported by the functions that need them: the light Triton models (the
# postprocessor, the BLS adapters) import this module and must not load torch.
if TYPE_CHECKING:
    import torch


def export_mel_params(export_dir: Path) -> C.MelParams:
    """The mel front end's parameters recorded in the export (sample rate, n_mels, hop...)."""
    return ExportManifest.read(export_dir).model.mel


def load_serving_tokenizer(export_dir: Path) -> Tokenizer:
    manifest = ExportManifest.read(export_dir)
    return load_tokenizer(Path(export_dir) / manifest.files.llm_merged, require_placeholder=True, raw=True)


def load_preprocessor(export_dir: Path, bucket_seconds: float | None = None):
    """The served preprocessor; ``bucket_seconds`` pads mel to length buckets (None: no padding)."""
    from canary_triton.frontend.features import load_front_end

    manifest = ExportManifest.read(export_dir)
    # The prompt ids and special ids the export computed with the checkpoint's tokenizer: this
    # process needs no tokenizer (Qwen3's holds ~170 MiB per process).
    ids = manifest.special_ids
    sub = C.Subsampling(factor=manifest.model.subsampling_factor)
    front_end = load_front_end(Path(export_dir) / manifest.files.frontend)
    bucket = 1 if bucket_seconds is None else C.mel_bucket_columns(bucket_seconds, front_end.params)
    pre = Preprocessor(
        front_end,
        list(manifest.asr_prompt_ids),
        ids.audio_placeholder,
        manifest.model.vocab_rows,
        sub,
        bucket_columns=bucket,
    )
    return pre, ids


def load_onnx(export_dir: Path, part: str, threads: int = 1):
    """ONNX Runtime session(s) for ``part`` = "encoder" or "projector" (only that one is loaded)."""
    files = ExportManifest.read(export_dir).files
    path = Path(export_dir) / {"encoder": files.encoder_onnx, "projector": files.projector_onnx}[part]
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    return OnnxEncoderProjector(
        path if part == "encoder" else None, path if part == "projector" else None, threads=threads
    )


def llm_dtype(export_dir: Path) -> torch.dtype:
    """The dtype the export wrote its Qwen3 weights in (its precision)."""
    import torch

    return getattr(torch, ExportManifest.read(export_dir).options.llm_dtype)


def load_llm(export_dir: Path, which: str = "llm_merged", dtype: torch.dtype | None = None):
    """One exported Qwen3 in the export's dtype (or ``dtype``)."""
    from transformers import AutoModelForCausalLM

    path = Path(export_dir) / ExportManifest.read(export_dir).files.weights(which)
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or llm_dtype(export_dir)).eval()


def load_lora(export_dir: Path, dtype: torch.dtype | None = None):
    """The ASR adapter beside ``llm_base`` as ``llm_runner.LoraWeights`` (None when the export
    has none: a checkpoint without a LoRA, or an older export)."""
    from safetensors import safe_open

    from canary_triton.cpu_llm.runner import LoraWeights

    path = Path(export_dir) / ExportManifest.read(export_dir).files.llm_base / ADAPTER_FILE
    if not path.is_file():
        return None
    dtype = dtype or llm_dtype(export_dir)
    layers: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
    with safe_open(str(path), "pt") as f:
        scale = float(f.metadata()["scale"])
        for key in f.keys():
            m = re.fullmatch(r"model\.layers\.(\d+)\.\w+\.(\w+)\.lora_A", key)
            if m:
                stem = key[: -len(".lora_A")]
                layers.setdefault(int(m.group(1)), {})[m.group(2)] = (
                    f.get_tensor(stem + ".lora_A").to(dtype),
                    f.get_tensor(stem + ".lora_B").to(dtype),
                )
    return LoraWeights(scale, layers)
