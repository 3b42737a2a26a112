"""The export folder's manifest, ``export.json``: what ``canary-triton export`` wrote, from what,
with which settings, and the model dimensions, token ids and limits that the Triton models, the
repository generator, the server and the benchmarks read back.

One typed description, frozen dataclasses whose field names are the JSON keys: the export builds
an :class:`ExportManifest` and writes it (:meth:`ExportManifest.write`); everything else reads it
(:meth:`ExportManifest.read`), which checks every field and refuses a missing or mistyped one in
one line naming its path (``limits.max_table_rows``). Optional fields (``None``) are left out of
the JSON, as they are absent from the exports that have no such thing (a cpu export has no plans).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from pathlib import Path
from types import UnionType
from typing import Any, Mapping, TypeVar, Union, get_args, get_origin, get_type_hints

from canary_triton.contract import MelParams, SpecialIds
from canary_triton.errors import CheckpointError

#: The manifest's file name in an export folder.
EXPORT_MANIFEST = "export.json"
#: The exact TensorRT and TensorRT-LLM build settings (written by a real gpu export and by --dry-run).
ENGINE_BUILD = "engine_build.json"
#: The layout below, written as ``schema_version``. An export.json without the key predates it and
#: has this same layout (version 1); any other version is refused.
MANIFEST_VERSION = 1
#: Beside llm_base's weights (``Files.llm_base``): the ASR adapter's A/B matrices for a run-time
#: LoRA (one set of LLM weights for both modes; see canary_triton.cpu_llm.runner.LoraWeights).
ADAPTER_FILE = "asr_adapter.safetensors"


@dataclass(frozen=True)
class Precision:
    """The numeric precision of the exported weights and why it was chosen."""

    llm: str  # the Qwen3 weights: "fp32" or "bf16" (the gpu profile's engines: "bf16")
    encoder: str  # the served encoder: "fp32" or "int8" on cpu, the TensorRT engines' precision on gpu
    reason: str  # one line: why that LLM precision (auto-detected from this CPU, given explicitly...)
    cpu_instruction_set: str  # the exporting CPU's widest instruction set (cpu_profile.instruction_set)
    #: one line: why that encoder precision (absent from exports made before the encoder had a choice)
    encoder_reason: str | None = None


@dataclass(frozen=True)
class RecordedOptions:
    """The options the export ran with. The four option sections are the option dataclasses as
    given (``dataclasses.asdict``), kept as objects: their fields belong to those classes."""

    llm_dtype: str  # torch dtype name of the exported Qwen3 weights: "float32", "bfloat16"...
    engine: dict[str, Any]  # export.tensorrt_engine.EngineOptions
    llm_engine: dict[str, Any]  # export.trtllm_engine.LlmEngineOptions (gpu: the merged engine's build options)
    repository: dict[str, Any]  # export.repository.RepositoryOptions
    long_form_segmenter: dict[str, Any]  # canary_triton.longform.segmenter.SegmentOptions of the long-form model
    vad_gate: bool  # the repository's voice-activity gate before ASR


@dataclass(frozen=True)
class ModelDimensions:
    """The checkpoint's dimensions and front end, read from its config at export."""

    encoder_dim: int  # the encoder's output width (the projector's input)
    llm_hidden: int  # the Qwen3's hidden size (the prompt-embedding table's width)
    vocab_rows: int  # rows of the Qwen3's embedding; prompt-table rows are addressed from here
    lora_r: int  # the ASR LoRA's rank (0: none)
    lora_alpha: float
    lora_scale: float  # alpha / r, the factor of the run-time adapter
    subsampling_factor: int  # mel columns per encoder frame
    mel: MelParams  # the mel front end's parameters


@dataclass(frozen=True)
class Limits:
    """The serving limits of this export (from the contract and the checkpoint)."""

    max_audio_seconds: float  # the longest clip one ASR request may send
    max_audio_frames: int  # encoder frames of that clip (its valid rows)
    max_table_rows: int  # prompt-table rows of that clip padded (contract.max_table_rows)
    default_max_new_tokens: int  # tokens generated when a request does not say
    max_new_tokens: int  # the most an ASR request may ask for
    llm_max_output_len: int  # the most one llm / llm_base / LLM-mode request may generate (the engines')


@dataclass(frozen=True)
class Files:
    """The artifacts' paths, relative to the export folder."""

    frontend: str  # mel.safetensors and mel.json
    encoder_onnx: str
    projector_onnx: str
    llm_merged: str  # HF Qwen3 with the LoRA merged (ASR mode) and the tokenizer
    llm_base: str  # HF Qwen3 without it (LLM mode), the run-time adapter beside it
    # gpu profile only:
    encoder_plan: str | None = None  # TensorRT plans (one architecture's; the others beside it)
    projector_plan: str | None = None
    trtllm_merged: str | None = None  # TensorRT-LLM engine folders
    trtllm_base: str | None = None
    engine_build: str | None = None  # every engine build setting (ENGINE_BUILD)

    def weights(self, which: str) -> str:
        """The Qwen3 folder ``which``: "llm_merged" or "llm_base" (the CPU llm models' ``weights``)."""
        folders = {"llm_merged": self.llm_merged, "llm_base": self.llm_base}
        if which not in folders:
            raise CheckpointError(f"weights {which!r}: expected one of {', '.join(folders)}")
        return folders[which]


@dataclass(frozen=True)
class Versions:
    """The exporting environment."""

    python: str
    torch: str


@dataclass(frozen=True, kw_only=True)
class ExportManifest:
    """``export.json``: one export folder's description (see the module docstring)."""

    schema_version: int = MANIFEST_VERSION
    canary_triton_version: str  # the canary-triton that exported
    profile: str  # "cpu" or "gpu"
    checkpoint: str  # the checkpoint folder exported (absolute)
    precision: Precision
    options: RecordedOptions
    lora: str  # one line: where the checkpoint's LoRA went
    model: ModelDimensions
    special_ids: SpecialIds  # resolved with the checkpoint's tokenizer
    asr_prompt_ids: tuple[int, ...]  # the ASR prompt, with one audio placeholder id
    limits: Limits
    files: Files
    versions: Versions
    dry_run: bool | None = None  # True: a gpu --dry-run (nothing built); absent otherwise
    throughput_model: dict[str, Any] | None = None  # gpu: gpu.throughput.record's output
    parity_passed: bool | None = None  # the parity report's verdict (absent: parity not run)
    repository: str | None = None  # the model repository written from this manifest (absolute)

    @classmethod
    def read(cls, export_dir: str | Path) -> ExportManifest:
        """The manifest of ``export_dir``, every field checked (CheckpointError naming the field)."""
        path = Path(export_dir) / EXPORT_MANIFEST
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: point the repository at a `canary-triton export` output")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data: Any, where: str = EXPORT_MANIFEST) -> ExportManifest:
        """From the parsed JSON; ``where`` (the file) starts each error message."""
        try:
            if not isinstance(data, dict):
                raise _Invalid("the file does not hold a JSON object")
            version = _check(int, data.get("schema_version", MANIFEST_VERSION), "schema_version")
            if version != MANIFEST_VERSION:
                newer = "newer than" if version > MANIFEST_VERSION else "not"
                raise CheckpointError(
                    f"{where}: schema_version {version} is {newer} the version this canary-triton reads "
                    f"({MANIFEST_VERSION}); re-export with this version, or serve it with the canary-triton "
                    "that exported it"
                )
            return _from_json(cls, data, "")
        except _Invalid as e:
            raise CheckpointError(f"{where}: {e}; re-export with this version of canary-triton") from None

    def to_json(self) -> dict[str, Any]:
        """The JSON object written as ``export.json`` (optional fields left out when None)."""
        return as_json(self)

    def write(self, export_dir: str | Path) -> Path:
        """Write ``<export_dir>/export.json``; returns its path."""
        path = Path(export_dir) / EXPORT_MANIFEST
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    def with_files(self, **paths: str) -> ExportManifest:
        """A copy with these ``files`` entries set (the gpu plans and engines as they are built)."""
        return replace(self, files=replace(self.files, **paths))


# -- reading and writing the dataclasses above ----------------------------------------------------
class _Invalid(Exception):
    """A field missing or of the wrong type (its message names the field's path)."""


_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "an object"}
T = TypeVar("T")


def _from_json(cls: type[T], data: Mapping[str, Any], path: str) -> T:
    """``cls`` from its JSON object, each field checked against its annotation; ``path`` is the
    object's place in export.json ("" at the top, "model.mel" ...), named in the error."""
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        where = f"{path}.{f.name}" if path else f.name
        if data.get(f.name) is None:
            if f.default is MISSING:
                raise _Invalid(f"{where} is missing")
            continue
        values[f.name] = _check(hints[f.name], data[f.name], where)
    return cls(**values)


def _check(hint: Any, value: Any, where: str) -> Any:
    """``value`` as the annotation ``hint`` says (a dataclass, tuple[int, ...], a scalar, a dict)."""
    if get_origin(hint) in (Union, UnionType):  # X | None: None was handled by the caller
        hint = next(a for a in get_args(hint) if a is not type(None))
    if is_dataclass(hint):
        return _from_json(hint, _check(dict, value, where), where)
    if get_origin(hint) is tuple:
        if not isinstance(value, list):
            raise _Invalid(f"{where} is {json.dumps(value)[:40]}, expected a list")
        return tuple(_check(get_args(hint)[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    kind = get_origin(hint) or hint
    if kind is float and type(value) is int:
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _Invalid(f"{where} is {json.dumps(value)[:40]}, expected {_KINDS[kind]}")
    return value


def section(cls: type[T], data: Any, path: str, where: str = EXPORT_MANIFEST) -> T:
    """A dataclass recorded inside export.json as a plain object (``throughput_model.shapes``),
    checked as the manifest's own sections are (CheckpointError naming ``where`` and the field)."""
    try:
        return _from_json(cls, _check(dict, data, path), path)
    except _Invalid as e:
        raise CheckpointError(f"{where}: {e}; re-export with this version of canary-triton") from None


def as_json(obj: Any) -> dict[str, Any]:
    """A section above (or the whole manifest) as its JSON object; None fields are left out."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        out[f.name] = as_json(value) if is_dataclass(value) else list(value) if isinstance(value, tuple) else value
    return out
