"""The parameters of each Triton Python model: one frozen dataclass per model.

``canary_triton/export/repository.py`` renders an instance into the model's ``config.pbtxt`` (``parameters {
key: ... value: { string_value: ... } }``, :meth:`ModelParams.parameters`) and the model parses
them back at ``initialize`` (:meth:`ModelParams.from_parameters`). The field names are the keys
and the field defaults are the only defaults: the repository options and the CLI take theirs from
here.

Values travel as strings: ``true``/``false`` for booleans, ``auto`` for a count left to the
server (``int | None`` fields, None = auto), ``segment.<field>`` for the nested long-form
segmenter. A key the model does not have, or a value of the wrong kind, is an error naming the
key, the value and what was expected (Triton then fails the model's load with that line).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Mapping, TypeVar

from canary_triton import contract as C
from canary_triton.errors import CanaryTritonError
from canary_triton.longform.segmenter import SegmentOptions
from canary_triton.runtime.cpu_profile import DEFAULT_LLM_NICE, check_nice

P = TypeVar("P", bound="ModelParams")

#: How a model's folder reaches the export folder (``<export>/model_repository/<model>/``).
ARTIFACTS = "../.."
#: The Qwen3 weights folders a CPU llm model may map (artifacts.Files.weights).
LLM_WEIGHTS = ("llm_base", "llm_merged")


@dataclass(frozen=True)
class ModelParams:
    """What every Python model has: where the export is, relative to the model's folder."""

    artifacts: str = ARTIFACTS

    def parameters(self) -> dict[str, str]:
        """As Triton model parameters (every field, nested dataclasses as ``<field>.<name>``)."""
        return _encode(self, "")

    @classmethod
    def from_parameters(cls: type[P], params: Mapping[str, str], model: str = "") -> P:
        """The parameters a model was configured with; a missing key takes its default."""
        where = f"model {model}: " if model else ""
        try:
            known = _keys(cls, "")
            unknown = sorted(set(params) - known)
            if unknown:
                raise CanaryTritonError(
                    f"unknown parameter(s) {', '.join(unknown)}; {cls.__name__} has {', '.join(sorted(known))}"
                )
            return _decode(cls, params, "")
        except (CanaryTritonError, ValueError) as e:
            raise CanaryTritonError(f"{where}{e}") from None


@dataclass(frozen=True)
class PreprocessorParams(ModelParams):
    threads: int = 1  # torch intra-op threads (the mel front end is light)
    mel_bucket_seconds: float = C.DEFAULT_MEL_BUCKET_SECONDS  # mel padded to multiples of this span
    vad_gate: bool = False  # a clip with no speech (the segmenter's detector) gives "" without the LLM
    segment: SegmentOptions = SegmentOptions()  # the detector the gate runs

    def __post_init__(self) -> None:
        C.mel_bucket_columns(self.mel_bucket_seconds)  # ValueError naming the range
        _positive(self, "threads")


@dataclass(frozen=True)
class EncoderParams(ModelParams):
    threads: int | None = None  # ONNX Runtime intra-op threads; None (auto): cpu_profile.split_threads


@dataclass(frozen=True)
class ProjectorParams(ModelParams):
    threads: int = 1

    def __post_init__(self) -> None:
        _positive(self, "threads")


@dataclass(frozen=True)
class PostprocessorParams(ModelParams):
    pass


#: Rows of the CPU llm_base (LLM mode): text prompts up to C.MAX_TEXT_PROMPT_TOKENS grow
#: every row's cache with them (16 rows x 2,048 positions = 3.5 GiB in bf16 at full size).
LLM_MODE_MAX_BATCH = 16


@dataclass(frozen=True)
class LlmParams(ModelParams):
    """The CPU ``llm`` / ``llm_base`` (the in-flight batcher over PyTorch)."""

    threads: int | None = None  # torch threads of the engine; None (auto): every core the server may run on
    nice: int = DEFAULT_LLM_NICE  # the engine's threads run this much below the encoder's priority
    # In-flight batch (rows) of the ASR llm: a decode step costs about the same from 1 to 16 rows on
    # CPU (memory-bound), so rows are throughput; 32 measured best at full size, 2 cores
    # (benchmarks/README.md: 47 steps of 21 rows vs 68 of 15 at 16). The KV cache grows to its
    # longest row for every row: 32 rows x an ASR prompt of 40 s audio = 3.5 GiB in bf16 at full size.
    max_batch: int = 32
    exclude_input_in_output: bool = True
    weights: str = LLM_WEIGHTS[0]  # the Qwen3 folder mapped: llm_base (one copy shared with llm_base) or llm_merged
    asr_adapter: bool = True  # apply the ASR LoRA at run time (on the base weights)
    # How often each request's client is asked whether it cancelled (TensorRT-LLM's key and
    # default): an IPC round trip, made by the request's response thread, not the engine.
    cancellation_check_period_ms: int = 100
    # A response send in progress longer than this cancels its request and frees its row (a
    # caller that died or stopped reading); the other rows go on.
    send_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        check_nice(self.nice)
        _positive(self, "max_batch")
        _positive(self, "cancellation_check_period_ms")
        _positive(self, "send_timeout_s")
        if self.weights not in LLM_WEIGHTS:
            raise CanaryTritonError(f"weights {self.weights!r}: expected one of {', '.join(LLM_WEIGHTS)}")


@dataclass(frozen=True)
class BlsParams(ModelParams):
    """The models that call other models from worker threads (BLS)."""

    max_inflight: int = 64  # worker threads: requests this model forwards at once

    def __post_init__(self) -> None:
        _positive(self, "max_inflight")


@dataclass(frozen=True)
class LlmUnaryParams(BlsParams):
    llm_model: str = C.LLM_MODEL  # the decoupled model it collects
    vad_gate: bool = False  # an empty prompt table (no speech) answers without calling it


@dataclass(frozen=True)
class StreamParams(BlsParams):
    pass


@dataclass(frozen=True)
class LlmModeParams(BlsParams):
    llm_model: str = C.LLM_BASE_MODEL


@dataclass(frozen=True)
class LongFormParams(BlsParams):
    segment_model: str = C.ENSEMBLE_MODEL  # the model each segment goes to
    max_seconds: float = C.MAX_LONG_FORM_SECONDS  # the longest recording taken
    segment_concurrency: int = 16  # segments in flight at once (shared by all long-form requests)
    segment: SegmentOptions = SegmentOptions()  # the detector that cuts the recording

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "max_seconds")
        _positive(self, "segment_concurrency")


@dataclass(frozen=True)
class AskParams(BlsParams):
    max_seconds: float = C.MAX_LONG_FORM_SECONDS  # the longest recording taken

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "max_seconds")


# -- the string codec ---------------------------------------------------------------------------
def _positive(params: Any, name: str) -> None:
    if not getattr(params, name) > 0:
        raise CanaryTritonError(f"{name} is {getattr(params, name)}; it must be > 0")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse_field(cls: type, name: str, text: str) -> Any:
    """``text`` as the dataclass ``cls``'s field ``name`` is typed (bool, int, float, str, or X | None)."""
    return _value(name, text, _hints(cls)[name])


def _keys(cls: type, prefix: str) -> set[str]:
    out: set[str] = set()
    hints = _hints(cls)
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            out |= _keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out


def _encode(obj: Any, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            out.update(_encode(value, f"{prefix}{f.name}."))
        elif isinstance(value, bool):
            out[prefix + f.name] = "true" if value else "false"
        elif value is None:
            out[prefix + f.name] = "auto"
        else:
            out[prefix + f.name] = str(value)
    return out


def _decode(cls: type, params: Mapping[str, str], prefix: str) -> Any:
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        hint = hints[f.name]
        if is_dataclass(hint):
            values[f.name] = _decode(hint, params, f"{prefix}{f.name}.")
        elif prefix + f.name in params:
            values[f.name] = _value(prefix + f.name, params[prefix + f.name], hint)
    try:
        return cls(**values)
    except ValueError as e:  # a dataclass's own range check (SegmentOptions)
        raise CanaryTritonError(f"{prefix}{e}") from None


def _value(key: str, text: str, hint: Any) -> Any:
    """``text`` as ``hint`` (bool, int, float, str, or one of them | None)."""
    optional = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    raw = str(text).strip()
    if optional and raw.lower() in ("", "auto"):
        return None
    try:
        if kind is bool:
            return {"true": True, "false": False}[raw.lower()]
        if kind in (int, float):
            return kind(raw)
        return str(text)
    except (KeyError, ValueError):
        want = {bool: "true or false", int: "an integer", float: "a number"}[kind]
        raise CanaryTritonError(
            f"parameter {key} is {text!r}; expected {want}{' or auto' if optional else ''}"
        ) from None
