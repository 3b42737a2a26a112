"""What the subcommands share: argparse value types (each a one-line error naming the limit) and help
texts; :data:`AddCommand`, the ``add(name, run, help)`` that registers one subcommand."""

from __future__ import annotations

import argparse
from typing import Callable

from canary_triton import contract as C
from canary_triton.export.trtllm_engine import FP8_REFUSAL, SUPPORTED_WEIGHT_QUANT

#: ``add(name, run, help) -> the subcommand's parser``; ``run(args) -> exit code``
AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]

LLM_DIR_HELP = (
    "Qwen3-1.7B folder (config.json + tokenizer); default: found as NeMo does, beside the checkpoint, "
    "then config.json's pretrained_llm as a folder or a hub id in the local Hugging Face cache"
)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def max_new_tokens(text: str) -> int:
    value = int(text)
    if not 1 <= value <= C.MAX_NEW_TOKENS_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {C.MAX_NEW_TOKENS_LIMIT}, got {value}")
    return value


def audio_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= C.MAX_AUDIO_SECONDS:
        raise argparse.ArgumentTypeError(f"must be in (0, {C.MAX_AUDIO_SECONDS:g}] seconds, got {value:g}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def milliseconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 ms, got {text}")
    return value


def weight_quant(text: str) -> str:
    if text == "fp8":
        raise argparse.ArgumentTypeError(FP8_REFUSAL)
    if text not in SUPPORTED_WEIGHT_QUANT:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(SUPPORTED_WEIGHT_QUANT)}, got {text!r}")
    return text
