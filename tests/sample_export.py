"""A complete, small :class:`ExportManifest` for tests that need one without running an export
(tests/test_artifacts.py checks that it round-trips through export.json)."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest, Files, Limits, ModelDimensions, Precision, RecordedOptions, Versions
from canary_triton.export.repository import RepositoryOptions
from canary_triton.export.tensorrt_engine import EngineOptions
from canary_triton.export.trtllm_engine import LlmEngineOptions


def sample_manifest(mel: C.MelParams = C.MelParams(), **changes) -> ExportManifest:
    """A cpu export's manifest of a small model (``changes``: fields replaced at the top level)."""
    sub = C.Subsampling()
    repo = RepositoryOptions()
    manifest = ExportManifest(
        canary_triton_version="0.1.0",
        profile="cpu",
        checkpoint="/checkpoints/tiny",
        precision=Precision(
            llm="fp32", encoder="fp32", reason="requested: fp32", cpu_instruction_set="AVX2", encoder_reason="auto"
        ),
        options=RecordedOptions(
            llm_dtype="float32",
            engine=asdict(EngineOptions()),
            llm_engine=asdict(LlmEngineOptions()),
            repository=asdict(repo),
            long_form_segmenter=asdict(repo.long_form_segment()),
            vad_gate=repo.vad_gate,
        ),
        lora="none in the checkpoint: llm_merged == llm_base",
        model=ModelDimensions(
            encoder_dim=16,
            llm_hidden=24,
            vocab_rows=100,
            lora_r=0,
            lora_alpha=0.0,
            lora_scale=0.0,
            subsampling_factor=sub.factor,
            mel=mel,
        ),
        special_ids=C.SpecialIds(pad=0, im_start=1, im_end=2, audio_placeholder=99),
        asr_prompt_ids=(1, 7, 99, 2, 1, 8),
        limits=Limits(
            max_audio_seconds=C.MAX_AUDIO_SECONDS,
            max_audio_frames=C.num_audio_frames(C.max_audio_samples(mel), mel, sub),
            max_table_rows=C.max_table_rows(mel, sub),
            default_max_new_tokens=C.DEFAULT_MAX_NEW_TOKENS,
            max_new_tokens=C.MAX_NEW_TOKENS_LIMIT,
            llm_max_output_len=C.MAX_NEW_TOKENS_LIMIT,
        ),
        files=Files(
            frontend="frontend",
            encoder_onnx="onnx/encoder.onnx",
            projector_onnx="onnx/projector.onnx",
            llm_merged="llm_merged",
            llm_base="llm_base",
        ),
        versions=Versions(python="3.11.7", torch="2.13.0+cpu"),
    )
    return replace(manifest, **changes)


def write_sample_export(folder: Path, **changes) -> Path:
    """``folder`` holding only the sample's export.json."""
    folder.mkdir(parents=True, exist_ok=True)
    sample_manifest(**changes).write(folder)
    return folder
