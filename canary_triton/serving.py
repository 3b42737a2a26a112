"""Loading an export's artifacts for the served pipeline, and the LLM request contract.

The Triton ``model.py`` files call these; tests call them directly too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import contract
from .artifacts import ADAPTER_FILE, ExportManifest
from .errors import CheckpointError, InputError
from .onnx_session import OnnxEncoderProjector
from .preprocess import Preprocessor
from .tokenizer import Tokenizer, load_tokenizer

# torch, transformers, safetensors and the modules built on torch (features, llm_runner,
# llm_engine) are imported by the functions that need them: the light Triton models (the
# postprocessor, the BLS adapters) import this module and must not load torch.
if TYPE_CHECKING:
    import torch


def export_mel_params(export_dir: Path) -> contract.MelParams:
    """The mel front end's parameters recorded in the export (sample rate, n_mels, hop...)."""
    return ExportManifest.read(export_dir).model.mel


def load_serving_tokenizer(export_dir: Path) -> Tokenizer:
    manifest = ExportManifest.read(export_dir)
    return load_tokenizer(Path(export_dir) / manifest.files.llm_merged, require_placeholder=True, raw=True)


def load_preprocessor(export_dir: Path, bucket_seconds: float | None = None):
    """The served preprocessor; ``bucket_seconds`` pads mel to length buckets (None: no padding)."""
    from .features import load_front_end

    manifest = ExportManifest.read(export_dir)
    # The prompt ids and special ids the export computed with the checkpoint's tokenizer: this
    # process needs no tokenizer (Qwen3's holds ~170 MiB per process).
    ids = manifest.special_ids
    sub = contract.Subsampling(factor=manifest.model.subsampling_factor)
    front_end = load_front_end(Path(export_dir) / manifest.files.frontend)
    bucket = 1 if bucket_seconds is None else contract.mel_bucket_columns(bucket_seconds, front_end.params)
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

    from .llm_runner import LoraWeights

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


@dataclass(frozen=True)
class LlmRequest:
    """One request to the ``llm`` model, validated (TensorRT-LLM backend semantics)."""

    input_ids: torch.Tensor  # [L] int64, fake ids >= vocab address table rows
    max_new_tokens: int
    end_id: int
    table: torch.Tensor | None  # [T, hidden]
    streaming: bool
    sampling: object | None = None  # llm_engine.Sampling, or None for greedy


def is_stop_request(stop: np.ndarray | None) -> bool:
    """Whether a request to ``llm`` is TensorRT-LLM's stop request (``stop`` true): it cancels
    the request in flight that has the same request id, and generates nothing itself."""
    return stop is not None and bool(np.asarray(stop).reshape(-1)[0])


def parse_sampling(
    temperature: np.ndarray | None,
    top_p: np.ndarray | None,
    seed: np.ndarray | None,
    names: tuple[str, str, str] = ("temperature", "runtime_top_p", "seed"),
):
    """Sampling settings, validated; None (greedy) when no temperature > 0 is given."""
    from .llm_engine import Sampling

    t = float(np.asarray(temperature).reshape(-1)[0]) if temperature is not None else 0.0
    p = float(np.asarray(top_p).reshape(-1)[0]) if top_p is not None else 1.0
    if not (0.0 <= t <= contract.MAX_TEMPERATURE) or t != t:
        raise InputError(f"input '{names[0]}' is {t:g}; it must be between 0 (greedy) and {contract.MAX_TEMPERATURE:g}")
    if not (0.0 < p <= 1.0):
        raise InputError(f"input '{names[1]}' is {p:g}; it must be in (0, 1]")
    if t == 0.0:
        return None
    s = int(np.asarray(seed).reshape(-1)[0]) if seed is not None else 0
    return Sampling(temperature=t, top_p=p, seed=s)


def check_llm_tensors(
    input_ids: np.ndarray,
    input_lengths: np.ndarray | None,
    request_output_len: np.ndarray,
    table_shape: tuple[int, ...] | None,
    vocab_rows: int,
    hidden: int,
    max_table_rows: int,
    max_output_len: int = contract.MAX_NEW_TOKENS_LIMIT,
) -> tuple[np.ndarray, int, int]:
    """The checks of an ``llm`` request that need no table data (its shape is enough, so BLS
    adapters run them on BF16 tables too): the prompt ids (cut to ``input_lengths``), the output
    length (at most ``max_output_len``, the export's ``limits.llm_max_output_len``, as the
    TensorRT-LLM engine allows at most its build's max new tokens), the table's row count."""
    ids = np.asarray(input_ids).reshape(-1).astype(np.int64)
    if input_lengths is not None:
        n = int(np.asarray(input_lengths).reshape(-1)[0])
        if not 0 < n <= ids.size:
            raise InputError(f"input 'input_lengths' is {n}; it must be between 1 and the {ids.size} ids sent")
        ids = ids[:n]
    if ids.size == 0:
        raise InputError("input 'input_ids' is empty")
    out_len = int(np.asarray(request_output_len).reshape(-1)[0])
    if not 1 <= out_len <= max_output_len:
        raise InputError(f"input 'request_output_len' is {out_len}; it must be between 1 and {max_output_len}")
    rows = 0
    if table_shape is not None:
        shape = tuple(table_shape)
        if len(shape) == 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 2 or shape[1] != hidden:
            raise InputError(f"input 'prompt_embedding_table' must be [1, rows, {hidden}], got {list(table_shape)}")
        if shape[0] > max_table_rows:
            raise InputError(f"input 'prompt_embedding_table' has {shape[0]} rows; the limit is {max_table_rows}")
        rows = shape[0]
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_rows + rows:
        raise InputError(
            f"input 'input_ids' holds id {int(ids.max()) if ids.max() >= vocab_rows + rows else int(ids.min())}; "
            f"ids must be in [0, {vocab_rows + rows}) (vocab {vocab_rows} + {rows} table rows)"
        )
    return ids, out_len, rows


def parse_llm_request(
    input_ids: np.ndarray,
    input_lengths: np.ndarray | None,
    request_output_len: np.ndarray,
    end_id: np.ndarray | None,
    table: np.ndarray | None,
    streaming: np.ndarray | None,
    vocab_rows: int,
    hidden: int,
    max_table_rows: int,
    temperature: np.ndarray | None = None,
    top_p: np.ndarray | None = None,
    seed: np.ndarray | None = None,
    max_output_len: int = contract.MAX_NEW_TOKENS_LIMIT,
) -> LlmRequest:
    import torch

    ids, out_len, _ = check_llm_tensors(
        input_ids,
        input_lengths,
        request_output_len,
        None if table is None else np.asarray(table).shape,
        vocab_rows,
        hidden,
        max_table_rows,
        max_output_len,
    )
    t = None
    if table is not None:
        t = np.asarray(table)
        if t.ndim == 3:
            t = t[0]
        if t.dtype != np.float32:
            raise InputError(f"input 'prompt_embedding_table' must be FP32 in the CPU profile, got {t.dtype}")
    end = -1 if end_id is None else int(np.asarray(end_id).reshape(-1)[0])
    stream = bool(np.asarray(streaming).reshape(-1)[0]) if streaming is not None else False
    return LlmRequest(
        torch.from_numpy(ids),
        out_len,
        end,
        None if t is None else torch.from_numpy(np.ascontiguousarray(t)),
        stream,
        parse_sampling(temperature, top_p, seed),
    )
