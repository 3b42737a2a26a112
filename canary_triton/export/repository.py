"""The Triton model repository, generated from one declarative description per profile.

Both profiles have the same model names, tensor names and ensemble wiring; only the backends of
``encoder``, ``projector`` and ``llm`` differ (Python + ONNX Runtime / PyTorch on CPU; TensorRT
plans and the ``tensorrtllm`` backend on GPU). Every ``config.pbtxt`` is rendered from
:data:`CONFIG_TEMPLATE` by :func:`fill_template`, which fails on any unfilled ``${field}`` (as
TensorRT-LLM's ``fill_template.py`` would leave it and Triton would then reject it at load).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.contract import TensorSpec
from canary_triton.errors import CanaryTritonError
from canary_triton.export.model_shells import write_shell
from canary_triton.longform.segmenter import SegmentOptions
from canary_triton.model_params import (
    LLM_MODE_MAX_BATCH,
    AskParams,
    BlsParams,
    EncoderParams,
    LlmModeParams,
    LlmParams,
    LlmUnaryParams,
    LongFormParams,
    PostprocessorParams,
    PreprocessorParams,
    ProjectorParams,
    StreamParams,
)

_SEGMENT = SegmentOptions()  # the long-form segmenter's defaults

REPOSITORY_DIR = "model_repository"

CONFIG_TEMPLATE = """name: "${name}"
${backend}
max_batch_size: ${max_batch_size}
${inputs}
${outputs}
${instance_group}
${batching}
${transaction_policy}
${parameters}
${ensemble_scheduling}
"""

_FIELD = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_template(template: str, values: dict[str, str]) -> str:
    """Substitute every ``${field}``; unknown fields in ``values`` and unfilled ones are errors."""
    wanted = set(_FIELD.findall(template))
    missing = sorted(wanted - values.keys())
    if missing:
        raise CanaryTritonError(f"template field(s) left unfilled: {', '.join(missing)}")
    extra = sorted(values.keys() - wanted)
    if extra:
        raise CanaryTritonError(f"value(s) for field(s) the template does not have: {', '.join(extra)}")
    text = _FIELD.sub(lambda m: values[m.group(1)], template)
    if _FIELD.search(text):
        raise CanaryTritonError(f"a filled value itself holds an unfilled field: {_FIELD.search(text).group(0)}")
    return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"


@dataclass(frozen=True)
class Batching:
    max_queue_delay_us: int
    max_queue_size: int  # beyond this, requests are rejected at once (UNAVAILABLE)
    default_timeout_us: int  # 0: no queue timeout


@dataclass(frozen=True)
class Step:
    model: str
    inputs: dict[str, str]  # model input -> ensemble tensor
    outputs: dict[str, str]  # model output -> ensemble tensor


@dataclass(frozen=True)
class ModelDecl:
    name: str
    backend: str  # python | tensorrt_plan | tensorrtllm | ensemble
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instance_count: int = 1
    kind: str = "KIND_CPU"
    batching: Batching | None = None
    decoupled: bool = False
    parameters: dict[str, str] = field(default_factory=dict)
    cc_model_filenames: dict[str, str] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)  # parameter key -> comment written above it


def _tensor(spec: TensorSpec, io: str) -> str:
    parts = [f'name: "{spec.name}"', f"data_type: {spec.dtype}", f"dims: [ {', '.join(map(str, spec.dims))} ]"]
    if io == "input":
        if spec.optional:
            parts.append("optional: true")
        if spec.ragged:
            parts.append("allow_ragged_batch: true")
    if spec.reshape is not None:
        parts.append(f"reshape: {{ shape: [ {', '.join(map(str, spec.reshape))} ] }}")
    return "  {\n    " + "\n    ".join(parts) + "\n  }"


def render(decl: ModelDecl) -> str:
    if decl.backend == "ensemble":
        backend = 'platform: "ensemble"'
    elif decl.backend == "tensorrt_plan":
        backend = 'platform: "tensorrt_plan"'
    else:
        backend = f'backend: "{decl.backend}"'
    if decl.cc_model_filenames:
        backend += "\n" + "\n".join(
            f'cc_model_filenames {{ key: "{k}" value: "{v}" }}' for k, v in sorted(decl.cc_model_filenames.items())
        )
    values = {
        "name": decl.name,
        "backend": backend,
        "max_batch_size": str(decl.max_batch_size),
        "inputs": "input [\n" + ",\n".join(_tensor(t, "input") for t in decl.inputs) + "\n]",
        "outputs": "output [\n" + ",\n".join(_tensor(t, "output") for t in decl.outputs) + "\n]",
        "instance_group": ""
        if decl.backend == "ensemble"
        else f"instance_group [ {{ count: {decl.instance_count} kind: {decl.kind} }} ]",
        "batching": "",
        "transaction_policy": f"model_transaction_policy {{ decoupled: {'true' if decl.decoupled else 'false'} }}"
        if decl.backend != "ensemble"
        else "",
        "parameters": "\n".join(
            "".join(f"# {line}\n" for line in decl.notes.get(k, "").splitlines())
            + f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
            for k, v in sorted(decl.parameters.items())
        ),
        "ensemble_scheduling": "",
    }
    if decl.batching is not None:
        b = decl.batching
        policy = f"default_queue_policy {{ max_queue_size: {b.max_queue_size}"
        if b.default_timeout_us:
            policy += f" timeout_action: REJECT default_timeout_microseconds: {b.default_timeout_us}"
        policy += " }"
        values["batching"] = (
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {b.max_queue_delay_us}\n  {policy}\n}}"
        )
    if decl.steps:
        steps = []
        for s in decl.steps:
            maps = [f'      input_map {{ key: "{k}" value: "{v}" }}' for k, v in s.inputs.items()]
            maps += [f'      output_map {{ key: "{k}" value: "{v}" }}' for k, v in s.outputs.items()]
            steps.append(
                f'    {{\n      model_name: "{s.model}"\n      model_version: -1\n' + "\n".join(maps) + "\n    }"
            )
        values["ensemble_scheduling"] = "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}"
    return fill_template(CONFIG_TEMPLATE, values)


#: How the CPU profile holds the LLM weights (first = default); see RepositoryOptions.cpu_llm_weights.
CPU_LLM_WEIGHTS = ("shared", "merged")


@dataclass(frozen=True)
class RepositoryOptions:
    """The repository's settings, flat (one CLI flag each). The defaults of those that become a
    Python model's parameters are that model's (canary_triton.model_params)."""

    max_batch: int = 16
    preprocessor_instances: int = 1
    encoder_instances: int = 1
    llm_max_batch: int = LlmParams.max_batch  # the CPU llm's in-flight rows (gpu: TensorRT-LLM max batch)
    llm_base_max_batch: int = LLM_MODE_MAX_BATCH  # the CPU llm_base's
    threads_per_instance: int = PreprocessorParams.threads  # the light Python models (preprocessor, projector)
    encoder_threads: int | None = EncoderParams.threads  # None: auto at serve time (cpu_profile.split_threads)
    llm_threads: int | None = LlmParams.threads  # None: auto at serve time (every core the server may run on)
    llm_nice: int = LlmParams.nice  # the LLM engine's priority below the encoder's (canary_triton.runtime.cpu_profile)
    # 0 measured best on CPU (benchmarks/serving_sweep.py); requests already queued still batch.
    max_queue_delay_us: int = 0
    max_queue_size: int = 256
    queue_timeout_us: int = 0  # 0: never
    kv_cache_free_gpu_mem_fraction: float = 0.5
    max_inflight: int = BlsParams.max_inflight  # worker threads of the BLS models (requests they forward at once)
    long_form_max_s: float = LongFormParams.max_seconds  # longest recording canary_qwen_long takes
    long_form_merge_s: float = _SEGMENT.merge_s  # segments merge speech up to this span (<= 40 s, the model's limit)
    long_form_concurrency: int = LongFormParams.segment_concurrency  # segments in flight at once (all requests)
    long_form_vad: str = _SEGMENT.vad  # silero | energy
    long_form_vad_threshold: float = _SEGMENT.vad_threshold
    long_form_vad_min_speech_s: float = _SEGMENT.min_speech_s
    long_form_vad_min_silence_s: float = _SEGMENT.min_pause_s
    long_form_vad_pad_s: float = _SEGMENT.pad_s
    long_form_silence_pad_s: float = _SEGMENT.silence_pad_s
    long_form_vad_threads: int = _SEGMENT.vad_threads
    mel_bucket_s: float = PreprocessorParams.mel_bucket_seconds  # preprocessor pads mel to multiples of this
    vad_gate: bool = PreprocessorParams.vad_gate  # short form: a clip with no speech gives "" without the LLM
    #: cpu: ``shared``: ``llm`` (ASR) and ``llm_base`` (LLM mode) map the same base weights file (one
    #: copy in memory; ASR adds the LoRA at run time); ``merged``: ``llm`` maps the merged copy.
    cpu_llm_weights: str = CPU_LLM_WEIGHTS[0]

    def long_form_segment(self) -> SegmentOptions:
        """The long-form segmenter these options describe (a bad value: one-line error naming it)."""
        try:
            return replace(
                _SEGMENT,
                merge_s=self.long_form_merge_s,
                vad=self.long_form_vad,
                vad_threshold=self.long_form_vad_threshold,
                min_speech_s=self.long_form_vad_min_speech_s,
                min_pause_s=self.long_form_vad_min_silence_s,
                pad_s=self.long_form_vad_pad_s,
                silence_pad_s=self.long_form_silence_pad_s,
                vad_threads=self.long_form_vad_threads,
            )
        except ValueError as e:
            raise CanaryTritonError(f"long-form segmenter: {e}") from None

    def __post_init__(self) -> None:
        if self.cpu_llm_weights not in CPU_LLM_WEIGHTS:
            raise CanaryTritonError(
                f"cpu llm weights {self.cpu_llm_weights!r}: expected one of {', '.join(CPU_LLM_WEIGHTS)}"
            )
        self.model_params(C.PREPROCESSOR_MODEL)  # each model's own range checks, one line each
        self.model_params(C.LLM_MODEL)
        self.model_params(C.LLM_BASE_MODEL)

    @classmethod
    def recorded(cls, values: dict[str, Any]) -> RepositoryOptions:
        """The options an export ran with, from export.json's ``options.repository``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(values.keys() - names)
        if unknown:
            raise CanaryTritonError(f"options.repository has unknown field(s) {', '.join(unknown)}")
        return cls(**values)

    def model_params(self, model: str):
        """The parameters of the CPU profile's Python model ``model`` (model_params) these options give."""
        if model == C.PREPROCESSOR_MODEL:
            return PreprocessorParams(
                threads=self.threads_per_instance,
                mel_bucket_seconds=self.mel_bucket_s,
                vad_gate=self.vad_gate,
                segment=self.long_form_segment(),
            )
        if model == C.ENCODER_MODEL:
            return EncoderParams(threads=self.encoder_threads)
        if model == C.PROJECTOR_MODEL:
            return ProjectorParams(threads=self.threads_per_instance)
        if model == C.POSTPROCESSOR_MODEL:
            return PostprocessorParams()
        if model in (C.LLM_MODEL, C.LLM_BASE_MODEL):
            base = model == C.LLM_BASE_MODEL
            merged = not base and self.cpu_llm_weights == "merged"
            return LlmParams(
                threads=self.llm_threads,
                nice=self.llm_nice,
                max_batch=self.llm_base_max_batch if base else self.llm_max_batch,
                weights="llm_merged" if merged else "llm_base",
                asr_adapter=not base and not merged,
            )
        bls = {"max_inflight": self.max_inflight}
        if model == C.LLM_UNARY_MODEL:
            return LlmUnaryParams(**bls, vad_gate=self.vad_gate)
        if model == C.STREAM_MODEL:
            return StreamParams(**bls)
        if model == C.LLM_MODE_MODEL:
            return LlmModeParams(**bls)
        if model in (C.LONG_FORM_MODEL, C.LONG_FORM_STREAM_MODEL):
            return LongFormParams(
                **bls,
                max_seconds=self.long_form_max_s,
                segment_concurrency=self.long_form_concurrency,
                segment=self.long_form_segment(),
            )
        if model == C.ASK_MODEL:
            return AskParams(**bls, max_seconds=self.long_form_max_s)
        raise CanaryTritonError(f"{model!r} is not a Python model of the repository")

    def parameters(self, model: str) -> dict[str, str]:
        """``model_params(model)`` as the strings its config.pbtxt holds."""
        return self.model_params(model).parameters()


def _with(spec: TensorSpec, **kw: Any) -> TensorSpec:
    return replace(spec, **kw)


def describe(
    manifest: ExportManifest, profile: str, opts: RepositoryOptions, export_dir: Path = Path(".")
) -> list[ModelDecl]:
    """The whole repository as declarations (no files); ``export_dir`` holds the GPU engines."""
    n_mels = manifest.model.mel.n_mels
    d_enc = manifest.model.encoder_dim
    hidden = manifest.model.llm_hidden
    table_dtype = C.PROMPT_TABLE_DTYPE[profile]
    # Not ragged: the preprocessor pads mel to length buckets, so the dynamic batcher groups equal
    # shapes only, in both profiles (a TensorRT plan batches nothing else).
    mel = _with(C.MEL, dims=(n_mels, -1))
    encoded = _with(C.ENCODED, dims=(-1, d_enc), ragged=True)
    table_out = _with(C.PROMPT_EMBEDDING_TABLE, dims=(-1, hidden), dtype=table_dtype, optional=False, ragged=False)
    table_in = _with(C.PROMPT_EMBEDDING_TABLE, dims=(-1, hidden), dtype=table_dtype)
    batching = Batching(opts.max_queue_delay_us, opts.max_queue_size, opts.queue_timeout_us)
    req_out = _with(C.REQUEST_OUTPUT_LEN, reshape=None)
    end_out, pad_out = _with(C.END_ID, optional=False, reshape=None), _with(C.PAD_ID, optional=False, reshape=None)
    lengths_out = _with(C.INPUT_LENGTHS, reshape=None)
    ids_out = _with(C.INPUT_IDS, ragged=False)
    llm_inputs = (
        C.INPUT_IDS,
        C.INPUT_LENGTHS,
        C.REQUEST_OUTPUT_LEN,
        C.END_ID,
        C.PAD_ID,
        C.STREAMING,
        table_in,
        C.PROMPT_VOCAB_SIZE,
        C.TEMPERATURE,
        C.RUNTIME_TOP_P,
        C.SEED,
        C.STOP,
    )
    llm_outputs = (C.OUTPUT_IDS, C.SEQUENCE_LENGTH)

    pre = ModelDecl(
        C.PREPROCESSOR_MODEL,
        "python",
        opts.max_batch,
        (_with(C.AUDIO, ragged=True), C.MAX_NEW_TOKENS),
        (mel, C.MEL_LENGTH, ids_out, lengths_out, req_out, end_out, pad_out),
        instance_count=opts.preprocessor_instances,
        batching=batching,
        parameters=opts.parameters(C.PREPROCESSOR_MODEL),
    )
    post = ModelDecl(
        C.POSTPROCESSOR_MODEL,
        "python",
        opts.max_batch,
        (C.OUTPUT_IDS, C.SEQUENCE_LENGTH),
        (C.TRANSCRIPT,),
        batching=batching,
        parameters=opts.parameters(C.POSTPROCESSOR_MODEL),
    )
    if profile == "cpu":
        enc = ModelDecl(
            C.ENCODER_MODEL,
            "python",
            opts.max_batch,
            (mel, C.MEL_LENGTH),
            (encoded, C.ENCODED_LENGTH),
            instance_count=opts.encoder_instances,
            batching=batching,
            parameters=opts.parameters(C.ENCODER_MODEL),
        )
        proj = ModelDecl(
            C.PROJECTOR_MODEL,
            "python",
            opts.max_batch,
            (encoded,),
            (table_out, C.PROMPT_VOCAB_SIZE),
            batching=batching,
            parameters=opts.parameters(C.PROJECTOR_MODEL),
        )
        llm = ModelDecl(
            C.LLM_MODEL,
            "python",
            opts.max_batch,
            llm_inputs,
            llm_outputs,
            batching=batching,
            decoupled=True,
            parameters=opts.parameters(C.LLM_MODEL),
        )
        llm_base = replace(llm, name=C.LLM_BASE_MODEL, parameters=opts.parameters(C.LLM_BASE_MODEL))
    elif profile == "gpu":
        files = manifest.files
        if files.encoder_plan is None or files.projector_plan is None:
            raise CanaryTritonError(
                "the export holds no TensorRT plans: run `canary-triton export --profile gpu` on the GPU"
            )
        enc = ModelDecl(
            C.ENCODER_MODEL,
            "tensorrt_plan",
            opts.max_batch,
            (_with(mel, ragged=False), C.MEL_LENGTH),
            (_with(encoded, ragged=False), C.ENCODED_LENGTH),
            instance_count=opts.encoder_instances,
            kind="KIND_GPU",
            batching=batching,
            cc_model_filenames=_cc_files(export_dir / files.encoder_plan),
        )
        proj = ModelDecl(
            C.PROJECTOR_MODEL,
            "tensorrt_plan",
            opts.max_batch,
            (_with(encoded, ragged=False),),
            (table_out,),
            kind="KIND_GPU",
            batching=batching,
            cc_model_filenames=_cc_files(export_dir / files.projector_plan),
        )
        llm = ModelDecl(
            C.LLM_MODEL,
            "tensorrtllm",
            opts.max_batch,
            llm_inputs,
            llm_outputs,
            batching=batching,
            decoupled=True,
            parameters=_trtllm_parameters(export_dir, files.trtllm_merged, files.llm_merged, opts, kv_reuse=False),
            notes=TRTLLM_NOTES,
        )
        llm_base = replace(
            llm,
            name=C.LLM_BASE_MODEL,
            notes=TRTLLM_NOTES,
            parameters=_trtllm_parameters(export_dir, files.trtllm_base, files.llm_base, opts, kv_reuse=True),
        )
    else:
        raise CanaryTritonError(f"unknown profile {profile!r}; expected cpu or gpu")
    unary = ModelDecl(
        C.LLM_UNARY_MODEL,
        "python",
        opts.max_batch,
        llm_inputs,
        llm_outputs,
        batching=batching,
        parameters=opts.parameters(C.LLM_UNARY_MODEL),
    )
    stream = ModelDecl(
        C.STREAM_MODEL,
        "python",
        opts.max_batch,
        (_with(C.AUDIO, ragged=True), C.MAX_NEW_TOKENS),
        (C.TRANSCRIPT,),
        batching=batching,
        decoupled=True,
        parameters=opts.parameters(C.STREAM_MODEL),
    )
    ens = ModelDecl(
        C.ENSEMBLE_MODEL,
        "ensemble",
        opts.max_batch,
        (C.AUDIO, C.MAX_NEW_TOKENS),
        (C.TRANSCRIPT,),
        steps=(
            Step(
                C.PREPROCESSOR_MODEL,
                {C.AUDIO.name: C.AUDIO.name, C.MAX_NEW_TOKENS.name: C.MAX_NEW_TOKENS.name},
                {t.name: "_" + t.name for t in pre.outputs},
            ),
            Step(C.ENCODER_MODEL, {C.MEL.name: "_mel", C.MEL_LENGTH.name: "_mel_length"}, {C.ENCODED.name: "_encoded"}),
            Step(C.PROJECTOR_MODEL, {C.ENCODED.name: "_encoded"}, {C.PROMPT_EMBEDDING_TABLE.name: "_table"}),
            Step(
                C.LLM_UNARY_MODEL,
                {
                    C.INPUT_IDS.name: "_input_ids",
                    C.INPUT_LENGTHS.name: "_input_lengths",
                    C.REQUEST_OUTPUT_LEN.name: "_request_output_len",
                    C.END_ID.name: "_end_id",
                    C.PAD_ID.name: "_pad_id",
                    C.PROMPT_EMBEDDING_TABLE.name: "_table",
                },
                {C.OUTPUT_IDS.name: "_output_ids", C.SEQUENCE_LENGTH.name: "_sequence_length"},
            ),
            Step(
                C.POSTPROCESSOR_MODEL,
                {C.OUTPUT_IDS.name: "_output_ids", C.SEQUENCE_LENGTH.name: "_sequence_length"},
                {C.TRANSCRIPT.name: C.TRANSCRIPT.name},
            ),
        ),
    )
    llm_mode = ModelDecl(
        C.LLM_MODE_MODEL,
        "python",
        opts.max_batch,
        (C.TEXT_INPUT, C.MAX_NEW_TOKENS, C.TEMPERATURE, C.TOP_P, C.SEED),
        (C.TEXT_OUTPUT,),
        batching=batching,
        parameters=opts.parameters(C.LLM_MODE_MODEL),
    )
    long = ModelDecl(
        C.LONG_FORM_MODEL,
        "python",
        opts.max_batch,
        (_with(C.AUDIO, ragged=True), C.MAX_NEW_TOKENS),
        (C.TRANSCRIPT, C.SEGMENTS),
        batching=batching,
        parameters=opts.parameters(C.LONG_FORM_MODEL),
    )
    long_stream = replace(long, name=C.LONG_FORM_STREAM_MODEL, decoupled=True)
    ask = ModelDecl(
        C.ASK_MODEL,
        "python",
        opts.max_batch,
        (_with(C.AUDIO, ragged=True), C.TEXT_INPUT, C.MAX_NEW_TOKENS, C.TEMPERATURE, C.TOP_P, C.SEED),
        (C.TRANSCRIPT, C.TEXT_OUTPUT),
        batching=batching,
        parameters=opts.parameters(C.ASK_MODEL),
    )
    return [pre, enc, proj, llm, unary, post, ens, stream, llm_base, llm_mode, long, long_stream, ask]


#: Comments rendered above the ``tensorrtllm`` models' parameters (what the backend does with them).
TRTLLM_NOTES = {
    "enable_kv_cache_reuse": (
        "ASR (llm): off. Every request carries an audio prompt table addressed by the same fake ids\n"
        "(vocab_size .. vocab_size+N-1). With reuse on (the backend's default when unset), TensorRT-LLM\n"
        "rejects such requests unless they carry prompt_table_extra_ids (llmRequest.cpp validate), and\n"
        "would otherwise reuse KV blocks computed from another clip's audio. LLM mode (llm_base, text\n"
        "only, no table) keeps reuse on: equal prompt prefixes share their KV blocks."
    ),
    "gpt_model_path": "Absolute: the backend does not resolve it against the model folder.",
    "kv_cache_free_gpu_mem_fraction": (
        "Of the GPU memory free when this model loads. llm and llm_base each take their fraction, so\n"
        "they must load one after the other: canary-triton serve and the GPU entrypoint start\n"
        "tritonserver with --model-load-thread-count=1 (in parallel both would see the same free memory)."
    ),
    "guided_decoding_backend": (
        "tokenizer_dir, xgrammar_tokenizer_info_path, guided_decoding_backend: read by the backend\n"
        "without a default (the model fails to load without them); empty = no guided decoding."
    ),
}


def _trtllm_parameters(
    export_dir: Path, engine: str, hf_dir: str, opts: RepositoryOptions, kv_reuse: bool
) -> dict[str, str]:
    """Parameters of a ``tensorrtllm`` model (keys as TensorRT-LLM's ``tensorrt_llm/config.pbtxt``)."""
    root = Path(export_dir).resolve()
    return {
        "gpt_model_type": "inflight_fused_batching",
        "gpt_model_path": str(root / engine),
        "max_beam_width": "1",
        "batch_scheduler_policy": "guaranteed_no_evict",
        "kv_cache_free_gpu_mem_fraction": str(opts.kv_cache_free_gpu_mem_fraction),
        "enable_kv_cache_reuse": "true" if kv_reuse else "false",
        "exclude_input_in_output": "true",
        "enable_chunked_context": "false",
        "cancellation_check_period_ms": str(LlmParams.cancellation_check_period_ms),  # the CPU llm's too
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
        "tokenizer_dir": str(root / hf_dir),
        "xgrammar_tokenizer_info_path": "",
        "guided_decoding_backend": "",
    }


def _cc_files(path: Path) -> dict[str, str]:
    """``encoder.sm90.plan`` -> {"9.0": "encoder.sm90.plan"} for every plan of that model in the
    folder (engines are per GPU architecture; Triton picks by the GPU's compute capability)."""
    stem = path.name.split(".")[0]
    out = {}
    for p in sorted(path.parent.glob(f"{stem}.sm*.plan")) or [path]:
        arch = p.name.split(".")[1][2:]
        out[f"{arch[:-1]}.{arch[-1]}"] = p.name
    return out


def write_repository(export_dir: str | Path, profile: str, opts: RepositoryOptions = RepositoryOptions()) -> Path:
    """Write ``<export_dir>/model_repository`` for ``profile`` from the export's manifest."""
    export_dir = Path(export_dir)
    manifest = ExportManifest.read(export_dir)
    repo = export_dir / REPOSITORY_DIR
    if repo.exists():
        shutil.rmtree(repo)
    for decl in describe(manifest, profile, opts, export_dir):
        model_dir = repo / decl.name
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(render(decl))
        if decl.backend == "python":
            write_shell(decl.name, model_dir / "1")
        elif decl.backend == "tensorrt_plan":
            for name in decl.cc_model_filenames.values():
                target = (export_dir / "engines" / name).resolve()
                (model_dir / "1" / name).symlink_to(target)
    return repo
