"""LoRA merge: the checkpoint's Qwen3 as plain Hugging Face checkpoints, merged and base.

ASR mode runs Qwen3 with the adapter: ``W' = W + scale * B @ A`` on every adapted projection,
``scale = lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA), both read from the checkpoint's config.
LLM mode runs the base Qwen3 (what NeMo's ``with model.llm.disable_adapter()`` does). Both are
written as ordinary ``Qwen3ForCausalLM`` folders (``config.json``, ``model.safetensors``, the
tokenizer with the audio placeholder added) that transformers and TensorRT-LLM's converter read.
Works tensor by tensor straight from the safetensors file (memory-mapped): each output tensor is
read, merged, cast and written before the next is read (:func:`stream_safetensors`), so the peak
is one tensor, not a second model (at full size one fp32 tensor of the tied embedding, 1.2 GB).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from canary_triton.artifacts import ADAPTER_FILE
from canary_triton.checkpoint.reader import (
    CONFIG_FILE,
    SAFETENSORS_DTYPES,
    WEIGHTS_FILE,
    CheckpointInfo,
    checkpoint_tokenizer,
)
from canary_triton.checkpoint.tokenizer import save_tokenizer
from canary_triton.errors import CheckpointError

log = logging.getLogger(__name__)
PEFT_PREFIX = "llm.base_model.model."
PLAIN_PREFIX = "llm."
EMBED_KEY = "embed_tokens.weight"
BASE_SUFFIX = ".base_layer.weight"
LORA_A = ".lora_A.default.weight"
LORA_B = ".lora_B.default.weight"


@dataclass(frozen=True)
class LoraSpec:
    r: int
    alpha: float
    use_rslora: bool

    @property
    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    @classmethod
    def from_info(cls, info: CheckpointInfo) -> "LoraSpec | None":
        """The adapter's settings, or None for a checkpoint without a LoRA."""
        lora = info.cfg.get("lora") or {}
        if "r" not in lora:
            return None
        for key in ("use_dora", "rank_pattern", "alpha_pattern"):
            if lora.get(key):
                raise CheckpointError(f"{info.paths.config}: lora.{key} is not supported by the merge")
        return cls(
            r=int(lora["r"]), alpha=float(lora.get("lora_alpha", lora["r"])), use_rslora=bool(lora.get("use_rslora"))
        )


def _llm_plan(keys: list[str], spec: LoraSpec | None) -> dict[str, tuple[str, str | None, str | None]]:
    """Output name -> (source key, lora_A key, lora_B key) of the HF Qwen3 tensors."""
    prefix = PEFT_PREFIX if spec is not None else PLAIN_PREFIX
    have = set(keys)
    plan: dict[str, tuple[str, str | None, str | None]] = {}
    for key in keys:
        if not key.startswith(prefix) or LORA_A in key or LORA_B in key:
            continue
        name = key[len(prefix) :]
        if name.endswith(BASE_SUFFIX):
            stem = key[: -len(BASE_SUFFIX)]
            a, b = stem + LORA_A, stem + LORA_B
            if a not in have or b not in have:
                raise CheckpointError(f"{key} has no {'lora_A' if a not in have else 'lora_B'} beside it")
            plan[name[: -len(BASE_SUFFIX)] + ".weight"] = (key, a, b)
        else:
            plan[name] = (key, None, None)
    embed = EMBED_KEY if EMBED_KEY in have else ("lm_head.weight" if "lm_head.weight" in plan else None)
    if embed is None:
        raise CheckpointError(f"the checkpoint has neither {EMBED_KEY} nor a tied lm_head.weight")
    plan["model.embed_tokens.weight"] = plan[embed] if embed in plan else (embed, None, None)
    return plan


def _merged(get, src: str, a_key: str | None, b_key: str | None, spec: LoraSpec | None, merge: bool) -> torch.Tensor:
    value = get(src)
    if a_key is None or not merge:
        return value
    a, b = get(a_key), get(b_key)
    if a.shape[0] != spec.r or b.shape[1] != spec.r:
        raise CheckpointError(f"{src}: LoRA rank {a.shape[0]} differs from the config's r={spec.r}")
    delta = b.to(torch.float32) @ a.to(torch.float32)
    return (value.to(torch.float32) + spec.scale * delta).to(value.dtype)


#: safetensors dtype names <-> torch dtypes (one table: checkpoint.SAFETENSORS_DTYPES).
_SLICE_DTYPES = {name: getattr(torch, dtype) for name, dtype in SAFETENSORS_DTYPES.items()}
_ST_DTYPES = {dtype: name for name, dtype in _SLICE_DTYPES.items()}


def stream_safetensors(
    path: Path,
    names: list[str],
    shapes: dict[str, tuple[int, ...]],
    dtypes: dict[str, torch.dtype],
    produce,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a safetensors file one tensor at a time: the header comes from the shapes and
    dtypes, then ``produce(name)`` is called for each tensor in turn and its bytes written."""
    header: dict[str, object] = {"__metadata__": metadata or {}}
    offset = 0
    for n in names:
        size = math.prod(shapes[n]) * torch.empty((), dtype=dtypes[n]).element_size()
        header[n] = {"dtype": _ST_DTYPES[dtypes[n]], "shape": list(shapes[n]), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for n in names:
            t = produce(n).to(dtypes[n]).contiguous()
            if tuple(t.shape) != tuple(shapes[n]):
                raise CheckpointError(f"{n}: produced shape {tuple(t.shape)}, expected {tuple(shapes[n])}")
            f.write(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            del t
    return path


def write_qwen3_streamed(
    info: CheckpointInfo,
    out_dir: Path,
    dtype: torch.dtype | None,
    names: list[str],
    shapes: dict[str, tuple[int, ...]],
    dtypes: dict[str, torch.dtype],
    produce,
) -> Path:
    """Write one HF Qwen3 folder; ``lm_head`` stays tied to the embedding when the config says so."""
    out_dir.mkdir(parents=True, exist_ok=True)
    llm_cfg = dict(info.llm_cfg)
    tied = bool(llm_cfg.get("tie_word_embeddings", True))
    if tied:
        names = [k for k in names if k != "lm_head.weight"]
    elif "lm_head.weight" not in names:
        raise CheckpointError("the Qwen3 config unties lm_head but the checkpoint stores no lm_head.weight")
    out_dtypes = {k: (dtype if dtype is not None and dtypes[k].is_floating_point else dtypes[k]) for k in names}
    if dtype is not None:
        llm_cfg["torch_dtype"] = str(dtype).replace("torch.", "")
    stream_safetensors(out_dir / WEIGHTS_FILE, names, shapes, out_dtypes, produce, metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(llm_cfg, indent=2))
    # with the audio placeholder added, as serving needs; under a class transformers 4.57.3 (the GPU
    # image's: the tensorrtllm backend's tokenizer_dir, the first-run oracle) loads as well as 5
    save_tokenizer(checkpoint_tokenizer(info), out_dir)
    return out_dir


def export_llm(info: CheckpointInfo, out_dir: str | Path, dtype: torch.dtype | None = None) -> tuple[Path, Path]:
    """Write ``<out>/llm_merged`` (ASR mode) and ``<out>/llm_base`` (LLM mode), tensor by tensor.

    A checkpoint without a LoRA gets the same plain Qwen3 in both folders (logged).
    """
    spec = LoraSpec.from_info(info)
    if spec is None:
        log.warning("%s has no LoRA: exporting its Qwen3 unchanged for both ASR and LLM mode", info.paths.config)
    out_dir = Path(out_dir)
    with safe_open(str(info.paths.weights), "pt") as f:
        keys = list(f.keys())
        plan = _llm_plan(keys, spec)
        names = list(plan)
        shapes, dtypes = {}, {}
        for n, (src, _, _) in plan.items():
            shapes[n] = tuple(f.get_slice(src).get_shape())
            dtypes[n] = _SLICE_DTYPES[f.get_slice(src).get_dtype()]
        written = []
        for folder, merge in (("llm_merged", True), ("llm_base", False)):
            written.append(
                write_qwen3_streamed(
                    info,
                    out_dir / folder,
                    dtype,
                    names,
                    shapes,
                    dtypes,
                    lambda n, merge=merge: _merged(f.get_tensor, *plan[n], spec, merge),
                )
            )
        if spec is not None:
            write_adapter(written[1] / ADAPTER_FILE, plan, f.get_tensor, spec, dtype)
    return written[0], written[1]


def write_adapter(path: Path, plan: dict, get, spec: LoraSpec, dtype: torch.dtype | None) -> Path:
    """``model.layers.{i}.self_attn.{proj}.lora_A/lora_B`` tensors, the scale in the metadata."""
    out = {}
    for name, (_, a_key, b_key) in plan.items():
        if a_key is None:
            continue
        stem = name[: -len(".weight")]
        a, b = get(a_key), get(b_key)
        out[stem + ".lora_A"] = a.to(dtype) if dtype is not None else a
        out[stem + ".lora_B"] = b.to(dtype) if dtype is not None else b
    save_file(
        {k: v.contiguous() for k, v in out.items()},
        str(path),
        metadata={"format": "pt", "scale": repr(spec.scale), "r": str(spec.r)},
    )
    return path
