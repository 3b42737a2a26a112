"""The ``llm`` model's request contract (TensorRT-LLM backend semantics): the stop request, the
sampling settings and the checks of the tensors, shared by the CPU ``llm`` and the BLS models that
forward to it (those check shapes only, so BF16 tables pass too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from canary_triton import contract as C
from canary_triton.errors import InputError

# torch and llm_batcher (which imports torch) are imported by the functions that need them: the
# BLS models import this module and must not load torch.
if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LlmRequest:
    """One request to the ``llm`` model, validated (TensorRT-LLM backend semantics)."""

    input_ids: torch.Tensor  # [L] int64, fake ids >= vocab address table rows
    max_new_tokens: int
    end_id: int
    table: torch.Tensor | None  # [T, hidden]
    streaming: bool
    sampling: object | None = None  # llm_batcher.Sampling, or None for greedy


def finish_reason_of(tokens: Sequence[int], limit: int, end_id: int) -> C.FinishReason:
    """Why a finished ``llm`` answer ended, from what both profiles return (TensorRT-LLM's
    ``tensorrtllm`` backend gives token ids and lengths only): ``length`` when the answer's
    ``tokens`` reached the request's ``request_output_len`` (``limit``) and the last one is not
    ``end_id``, else ``stop``. The end id is not among the tokens when the engine leaves it out
    (the CPU engine and TensorRT-LLM's executor do), so an answer of ``limit`` tokens then is
    ``length`` even if the end id would have come next: the limit is what cut it."""
    if limit < 1:
        raise ValueError(f"the output-length limit must be >= 1, got {limit}")
    if len(tokens) >= limit and int(tokens[-1]) != end_id:
        return C.FinishReason.LENGTH
    return C.FinishReason.STOP


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
    from canary_triton.cpu_llm.batcher import Sampling

    t = float(np.asarray(temperature).reshape(-1)[0]) if temperature is not None else 0.0
    p = float(np.asarray(top_p).reshape(-1)[0]) if top_p is not None else 1.0
    if not (0.0 <= t <= C.MAX_TEMPERATURE) or t != t:
        raise InputError(f"input '{names[0]}' is {t:g}; it must be between 0 (greedy) and {C.MAX_TEMPERATURE:g}")
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
    max_output_len: int = C.MAX_NEW_TOKENS_LIMIT,
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
    max_output_len: int = C.MAX_NEW_TOKENS_LIMIT,
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
