"""perf_analyzer's ``--input-data`` JSON for every entry point, from real audio or text files.

Each file becomes one entry of ``data`` (perf_analyzer cycles through them), by mode:

- ``asr`` (audio files; ``canary_qwen``, ``canary_qwen_stream``, ``canary_qwen_long``,
  ``canary_qwen_long_stream``): ``audio`` as 16 kHz mono float32, base64 of the little-endian
  bytes, with its own shape (the input is variable length, so every entry carries ``shape``
  without the batch dimension);
- ``llm`` (text files, e.g. transcripts; ``canary_qwen_llm``): ``text_input`` = the instruction
  about the file's text (``contract.llm_mode_text``, the summary instruction by default);
- ``ask`` (audio files; ``canary_qwen_ask``): ``audio`` and ``text_input`` = the instruction;

and ``max_new_tokens`` when given. Every optional input the model has is either written or left
out, never filled by perf_analyzer (its ``--string-data`` would put text into numeric inputs).
Run with ``--input-data FILE -b 1`` (one request per entry, as clients send them).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from canary_triton import contract as C
from canary_triton.client.audio_input import as_audio
from canary_triton.errors import InputError

_NUMPY = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64, "UINT64": np.uint64, "BYTES": np.object_}


#: What each mode's files are and which entry points take its entries.
MODES = {
    "asr": (
        "audio files",
        (
            C.ENSEMBLE_MODEL,
            C.STREAM_MODEL,
            C.LONG_FORM_MODEL,
            C.LONG_FORM_STREAM_MODEL,
        ),
    ),
    "llm": ("text files (an instruction is asked about each)", (C.LLM_MODE_MODEL,)),
    "ask": ("audio files (the instruction is asked about each transcript)", (C.ASK_MODEL,)),
}


def perf_input_entry(
    samples: np.ndarray | None = None, max_new_tokens: int | None = None, text: str | None = None
) -> dict[str, Any]:
    """One entry: ``audio`` (when ``samples``), ``text_input`` (when ``text``), ``max_new_tokens``."""
    entry: dict[str, Any] = {}
    if samples is not None:
        x = np.ascontiguousarray(samples, dtype="<f4")
        entry[C.AUDIO.name] = {"b64": base64.b64encode(x.tobytes()).decode("ascii"), "shape": [int(x.shape[0])]}
    if text is not None:
        entry[C.TEXT_INPUT.name] = {"content": [text], "shape": [1]}
    if max_new_tokens is not None:
        entry[C.MAX_NEW_TOKENS.name] = {"content": [int(max_new_tokens)], "shape": [1]}
    return entry


def build_perf_input(
    files: Sequence[str | Path],
    max_new_tokens: int | None = None,
    mode: str = "asr",
    instruction: str = C.SUMMARIZE_INSTRUCTION,
) -> dict[str, Any]:
    if mode not in MODES:
        raise InputError(f"perf-input mode {mode!r}: expected one of {', '.join(MODES)}")
    if not files:
        raise InputError(f"perf-input --mode {mode} needs at least one file ({MODES[mode][0]})")
    if mode == "llm":
        entries = [perf_input_entry(None, max_new_tokens, C.llm_mode_text(instruction, _read_text(f))) for f in files]
    else:
        text = instruction if mode == "ask" else None
        entries = [perf_input_entry(as_audio(f).samples, max_new_tokens, text) for f in files]
    return {"data": entries}


def _read_text(path: str | Path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be read as UTF-8 text ({e})") from None
    if not text:
        raise InputError(f"{path}: the text file is empty")
    return text


def write_perf_input(
    files: Sequence[str | Path],
    out: str | Path,
    max_new_tokens: int | None = None,
    mode: str = "asr",
    instruction: str = C.SUMMARIZE_INSTRUCTION,
) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(build_perf_input(files, max_new_tokens, mode, instruction)))
    return out


def decode_entry_tensor(value: dict[str, Any], datatype: str) -> np.ndarray:
    """An entry's tensor as perf_analyzer will send it (b64 raw bytes or a ``content`` list)."""
    dtype = _NUMPY[datatype]
    if "b64" in value:
        arr = np.frombuffer(base64.b64decode(value["b64"]), dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        arr = np.asarray(value["content"], dtype=dtype)
    return arr.reshape(value["shape"])


def validate_perf_input(data: dict[str, Any], metadata: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Problems of ``data`` against a served model's metadata and config (the JSON of
    ``get_model_metadata`` and ``get_model_config``): unknown or missing required inputs, wrong
    datatypes, shapes that do not fit the declared dims (metadata dims include the batch
    dimension when ``max_batch_size`` > 0). Empty list: valid."""
    problems: list[str] = []
    max_batch_size = int(config.get("max_batch_size", 0))
    optional = {i["name"] for i in config.get("input", []) if i.get("optional")}
    inputs = {i["name"]: i for i in metadata["inputs"]}
    entries = data.get("data")
    if not isinstance(entries, list) or not entries:
        return ["'data' must be a non-empty list"]
    for n, entry in enumerate(entries):
        for name, value in entry.items():
            if name not in inputs:
                problems.append(f"entry {n}: the model has no input '{name}'")
                continue
            spec = inputs[name]
            dims = [int(d) for d in spec["shape"]][1 if max_batch_size > 0 else 0 :]
            shape = list(value.get("shape", []))
            if len(shape) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, shape)):
                problems.append(f"entry {n}: '{name}' shape {shape} does not fit dims {dims}")
                continue
            if spec["datatype"] not in _NUMPY:
                problems.append(f"entry {n}: '{name}' has datatype {spec['datatype']} this writer does not produce")
                continue
            try:
                arr = decode_entry_tensor(value, spec["datatype"])
            except (ValueError, KeyError) as e:
                problems.append(f"entry {n}: '{name}' content does not match shape {shape} as {spec['datatype']}: {e}")
                continue
            if arr.size != int(np.prod(shape)):
                problems.append(f"entry {n}: '{name}' holds {arr.size} values for shape {shape}")
        for name in inputs:
            if name not in entry and name not in optional:
                problems.append(f"entry {n}: required input '{name}' is missing")
    return problems
