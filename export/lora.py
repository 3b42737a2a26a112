"""LoRA merge: the checkpoint's Qwen3 as plain Hugging Face checkpoints, merged and base.

ASR mode runs Qwen3 with the adapter: ``W' = W + scale * B @ A`` on every adapted projection,
``scale = lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA), both read from the checkpoint's config.
LLM mode runs the base Qwen3 (what NeMo's ``with model.llm.disable_adapter()`` does). Both are
written as ordinary ``Qwen3ForCausalLM`` folders (``config.json``, ``model.safetensors``, the
tokenizer with the audio placeholder added) that transformers and TensorRT-LLM's converter read.
Works on tensors straight from the safetensors file: no NeMo, no second copy of the model.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointInfo, checkpoint_tokenizer
from ..errors import CheckpointError

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
        return cls(r=int(lora["r"]), alpha=float(lora.get("lora_alpha", lora["r"])), use_rslora=bool(lora.get("use_rslora")))


def split_llm_tensors(tensors: dict[str, torch.Tensor], spec: LoraSpec | None, merge: bool) -> dict[str, torch.Tensor]:
    """HF ``Qwen3ForCausalLM`` tensors from the checkpoint's PEFT layout (merged or base).

    Without a LoRA (``spec`` None) the LLM keys are ``llm.*`` and both results are the same.
    """
    prefix = PEFT_PREFIX if spec is not None else PLAIN_PREFIX
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if not key.startswith(prefix) or LORA_A in key or LORA_B in key:
            continue
        name = key[len(prefix):]
        if name.endswith(BASE_SUFFIX):
            stem = key[: -len(BASE_SUFFIX)]
            a, b = tensors.get(stem + LORA_A), tensors.get(stem + LORA_B)
            if a is None or b is None:
                raise CheckpointError(f"{key} has no {'lora_A' if a is None else 'lora_B'} beside it")
            if a.shape[0] != spec.r or b.shape[1] != spec.r:
                raise CheckpointError(f"{stem}: LoRA rank {a.shape[0]} differs from the config's r={spec.r}")
            weight = value
            if merge:
                delta = b.to(torch.float32) @ a.to(torch.float32)
                weight = (value.to(torch.float32) + spec.scale * delta).to(value.dtype)
            out[name[: -len(BASE_SUFFIX)] + ".weight"] = weight.contiguous()
        else:
            out[name] = value.contiguous()
    embed = tensors.get(EMBED_KEY, out.get("lm_head.weight"))  # tied: stored under either name
    if embed is None:
        raise CheckpointError(f"the checkpoint has neither {EMBED_KEY} nor a tied lm_head.weight")
    out["model.embed_tokens.weight"] = embed.contiguous()
    return out


def write_qwen3(info: CheckpointInfo, tensors: dict[str, torch.Tensor], out_dir: Path, dtype: torch.dtype | None) -> Path:
    """Write one HF Qwen3 folder; ``lm_head`` stays tied to the embedding when the config says so."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    llm_cfg = dict(info.llm_cfg)
    tied = bool(llm_cfg.get("tie_word_embeddings", True))
    if tied:
        tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    elif "lm_head.weight" not in tensors:
        raise CheckpointError("the Qwen3 config unties lm_head but the checkpoint stores no lm_head.weight")
    if dtype is not None:
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
        llm_cfg["torch_dtype"] = str(dtype).replace("torch.", "")
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(llm_cfg, indent=2))
    tok = checkpoint_tokenizer(info)  # with the audio placeholder added, as serving needs
    tok.hf.save_pretrained(str(out_dir))
    return out_dir


def export_llm(info: CheckpointInfo, out_dir: str | Path, dtype: torch.dtype | None = None) -> tuple[Path, Path]:
    """Write ``<out>/llm_merged`` (ASR mode) and ``<out>/llm_base`` (LLM mode).

    A checkpoint without a LoRA gets the same plain Qwen3 in both folders (logged).
    """
    from safetensors.torch import load_file

    spec = LoraSpec.from_info(info)
    if spec is None:
        log.warning("%s has no LoRA: exporting its Qwen3 unchanged for both ASR and LLM mode", info.paths.config)
    tensors = load_file(str(info.paths.weights))
    out_dir = Path(out_dir)
    merged = write_qwen3(info, split_llm_tensors(tensors, spec, merge=True), out_dir / "llm_merged", dtype)
    base = write_qwen3(info, split_llm_tensors(tensors, spec, merge=False), out_dir / "llm_base", dtype)
    return merged, base

