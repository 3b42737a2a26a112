"""The model repository's settings (:class:`RepositoryOptions`, one CLI flag each) and the
parameters they give each Triton Python model of the CPU profile (:mod:`canary_triton.model_params`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from canary_triton import contract as C
from canary_triton.errors import CanaryTritonError
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
