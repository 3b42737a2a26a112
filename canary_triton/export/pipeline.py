"""``canary-triton export``: a checkpoint folder -> every artifact the Triton repository needs.

Layout of the output folder::

    export.json          what was exported, from what, with which settings and versions
    parity.json          each artifact against NeMo's SALM on fixed probe clips (max abs diffs)
    frontend/            mel.safetensors (fb, window bit-exact from the checkpoint), mel.json
    onnx/                encoder.onnx, projector.onnx
    llm_merged/          HF Qwen3 with the LoRA merged (ASR mode) + tokenizer with the placeholder
    llm_base/            HF Qwen3 without it (LLM mode)
    engines/             gpu profile only: encoder.smXX.plan, projector.smXX.plan, timing cache
    trtllm/merged, trtllm/base   gpu profile only: TensorRT-LLM engines
"""

from __future__ import annotations

import gc
import json
import platform
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from canary_triton import __version__
from canary_triton import contract as C
from canary_triton.artifacts import (
    ENGINE_BUILD,
    ExportManifest,
    Files,
    Limits,
    ModelDimensions,
    Precision,
    RecordedOptions,
    Versions,
)
from canary_triton.checkpoint.reader import CheckpointInfo, checkpoint_tokenizer, inspect_checkpoint, load_salm
from canary_triton.errors import CanaryTritonError
from canary_triton.export.frontend import export_front_end
from canary_triton.export.lora import export_llm
from canary_triton.export.onnx_encoder import (
    ENCODER_ONNX,
    PROJECTOR_BF16_ONNX,
    PROJECTOR_ONNX,
    export_onnx,
    quantize_encoder_int8,
)
from canary_triton.export.options import ExportOptions
from canary_triton.export.parity import (
    PARITY_REPORT,
    PARITY_TABLE,
    finish_report,
    free_llm,
    llm_parity,
    nemo_llm_references,
    nemo_perception_references,
    parity_table,
    perception_parity,
)
from canary_triton.export.repository import write_repository
from canary_triton.export.tensorrt_engine import (
    build_encoder_engines,
    encoder_profiles,
    gpu_arch_tag,
    require_tensorrt,
    tensorrt_build_settings,
)
from canary_triton.export.trtllm_engine import (
    LlmEngineOptions,
    build_llm_engine,
    llm_build_settings,
    require_tensorrt_llm,
)
from canary_triton.gpu.throughput import Assumptions, GpuDefaults, ModelShapes, record
from canary_triton.runtime.cpu_profile import instruction_set


def check_audio_limit(info: CheckpointInfo, max_audio_seconds: float) -> None:
    """The exported encoder's positional table holds ``pos_emb_max_len`` frames; refuse more."""
    table = int(info.cfg["perception"]["encoder"].get("pos_emb_max_len", 5000))
    frames = info.num_audio_frames(int(max_audio_seconds * info.mel.sample_rate))
    if frames > table:
        raise CanaryTritonError(
            f"{max_audio_seconds:g} s of audio needs {frames} encoder frames, but the exported encoder's "
            f"positional table (pos_emb_max_len) holds {table}"
        )


def llm_max_output_len(info: CheckpointInfo, opts: LlmEngineOptions) -> int:
    """The LLM engines' ``max_new_tokens``: the most tokens one ``llm``/``llm_base`` request may
    generate in either profile (TensorRT-LLM: max_seq_len - max_input_len). The longest prompt plus
    that many tokens must fit the Qwen3's ``max_position_embeddings``."""
    context = int(info.llm_cfg.get("max_position_embeddings", 0)) or None
    if opts.max_new_tokens < 1:
        raise CanaryTritonError(f"--max-new-tokens is {opts.max_new_tokens}; it must be >= 1")
    if context is not None and opts.max_input_len + opts.max_new_tokens > context:
        raise CanaryTritonError(
            f"--max-new-tokens {opts.max_new_tokens} plus the longest prompt ({opts.max_input_len} tokens) exceeds "
            f"the Qwen3's max_position_embeddings {context}; the most is {context - opts.max_input_len}"
        )
    return opts.max_new_tokens


def table_rows_for(info: CheckpointInfo, max_audio_seconds: float) -> int:
    """Prompt-table rows of the longest clip the encoder engines take (C.max_table_rows:
    the padded tensor's frames, e.g. 501 for 40 s)."""
    cols = C.mel_columns(int(max_audio_seconds * info.mel.sample_rate), info.mel)
    return C.num_encoder_frames(cols, info.subsampling)


def gpu_llm_options(info: CheckpointInfo, opts: ExportOptions) -> LlmEngineOptions:
    """The TensorRT-LLM engine options: the prompt table sized for the longest padded clip."""
    return replace(opts.llm_engine, max_audio_frames=table_rows_for(info, opts.engine.max_audio_seconds))


def gpu_build_plan(info: CheckpointInfo, opts: ExportOptions, arch: str) -> dict[str, Any]:
    """Every setting the gpu engine builds use, as JSON (``engine_build.json``): the encoder and
    projector TensorRT profiles and precision, and each TensorRT-LLM engine's BuildConfig."""
    shapes = encoder_profiles(opts.engine, info.mel, info.subsampling, info.encoder_dim)
    onnx = {"encoder": f"onnx/{ENCODER_ONNX}", "projector": f"onnx/{PROJECTOR_BF16_ONNX}"}
    llm_opts = gpu_llm_options(info, opts)
    return {
        "gpu_arch": arch,
        "tensorrt": {
            name: tensorrt_build_settings(
                onnx[name], f"engines/{name}.{arch}.plan", shapes[name], opts.engine, f"engines/timing.{arch}.cache"
            )
            for name in ("encoder", "projector")
        },
        "tensorrt_llm": {
            name: llm_build_settings(f"llm_{name}", f"trtllm/{name}", llm_opts) for name in ("merged", "base")
        },
        "throughput_model": throughput_record(info, opts),
    }


def throughput_record(info: CheckpointInfo, opts: ExportOptions) -> dict[str, Any]:
    """The throughput model for this checkpoint and GPU (gpu.throughput.record): its derived
    defaults, the settings used, which came from it, and its predictions for them (not measured)."""
    used = GpuDefaults(
        llm_max_batch=opts.llm_engine.max_batch,
        max_num_tokens=opts.llm_engine.max_num_tokens,
        kv_cache_free_gpu_mem_fraction=opts.repository.kv_cache_free_gpu_mem_fraction,
        encoder_max_batch=opts.engine.max_batch,
        encoder_opt_batch=opts.engine.opt_batch,
        encoder_instances=opts.repository.encoder_instances,
        max_inflight=opts.repository.max_inflight,
    )
    return record(
        ModelShapes.from_checkpoint(info),
        opts.gpu_model,
        Assumptions(mel_bucket_seconds=opts.repository.mel_bucket_s),
        used,
        opts.sized_by_model,
    )


def _manifest(
    checkpoint: str | Path,
    info: CheckpointInfo,
    tok,
    opts: ExportOptions,
    files: Files,
    precision,
    llm_dtype: torch.dtype,
) -> ExportManifest:
    encoder = opts.encoder_precision_choice(precision)
    return ExportManifest(
        canary_triton_version=__version__,
        profile=opts.profile,
        checkpoint=str(Path(checkpoint).resolve()),
        precision=Precision(
            llm=precision.precision if opts.profile == "cpu" else "bf16",
            encoder=encoder.precision,
            reason=precision.reason,
            encoder_reason=encoder.reason,
            cpu_instruction_set=instruction_set(),
        ),
        options=RecordedOptions(
            llm_dtype=str(llm_dtype).replace("torch.", ""),
            engine=asdict(opts.engine),
            llm_engine=asdict(opts.llm_engine),
            repository=asdict(opts.repository),
            long_form_segmenter=asdict(opts.repository.long_form_segment()),
            vad_gate=opts.repository.vad_gate,
        ),
        lora=(
            "merged into llm_merged; its A/B matrices beside llm_base (asr_adapter.safetensors) for the "
            "run-time adapter"
            if info.lora_r
            else "none in the checkpoint: llm_merged == llm_base"
        ),
        model=ModelDimensions(
            encoder_dim=info.encoder_dim,
            llm_hidden=info.llm_hidden,
            vocab_rows=info.vocab_rows,
            lora_r=info.lora_r,
            lora_alpha=info.lora_alpha,
            lora_scale=info.lora_scale,
            subsampling_factor=info.subsampling.factor,
            mel=info.mel,
        ),
        special_ids=tok.ids,
        asr_prompt_ids=tuple(tok.asr_prompt_ids()),
        limits=Limits(
            max_audio_seconds=C.MAX_AUDIO_SECONDS,
            max_audio_frames=info.num_audio_frames(C.max_audio_samples(info.mel)),
            max_table_rows=C.max_table_rows(info.mel, info.subsampling),
            default_max_new_tokens=C.DEFAULT_MAX_NEW_TOKENS,
            max_new_tokens=C.MAX_NEW_TOKENS_LIMIT,
            llm_max_output_len=llm_max_output_len(info, opts.llm_engine),
        ),
        files=files,
        versions=Versions(python=platform.python_version(), torch=torch.__version__),
    )


def _check_output_folder(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise CanaryTritonError(f"output folder {out_dir} is not empty; choose another or pass --force to overwrite")


def _write_gpu_plan(out_dir: Path, manifest: ExportManifest, plan: dict[str, Any]) -> ExportManifest:
    (out_dir / ENGINE_BUILD).write_text(json.dumps(plan, indent=2))
    return replace(
        manifest.with_files(engine_build=ENGINE_BUILD),
        options=replace(manifest.options, llm_engine=plan["tensorrt_llm"]["merged"]["options"]),
        throughput_model=plan["throughput_model"],
    )


def plan_gpu_export(
    checkpoint: str | Path,
    out_dir: str | Path,
    opts: ExportOptions,
    llm_dir: str | Path | None = None,
    force: bool = False,
) -> ExportManifest:
    """``--dry-run``: the complete gpu model repository, ``export.json`` and ``engine_build.json``
    from the checkpoint's config and tokenizer alone (no weights read, nothing built, no TensorRT).
    The plans and engines it names are what a real export on a ``gpu_arch`` GPU writes."""
    opts.repository.long_form_segment()
    out_dir = Path(out_dir)
    _check_output_folder(out_dir, force)
    info = inspect_checkpoint(checkpoint, llm_dir)
    check_audio_limit(info, opts.engine.max_audio_seconds)
    llm_max_output_len(info, opts.llm_engine)
    tok = checkpoint_tokenizer(info)
    plan = gpu_build_plan(info, opts, opts.gpu_arch)
    files = Files(
        frontend="frontend",
        encoder_onnx=f"onnx/{ENCODER_ONNX}",
        projector_onnx=f"onnx/{PROJECTOR_ONNX}",
        llm_merged="llm_merged",
        llm_base="llm_base",
        encoder_plan=plan["tensorrt"]["encoder"]["plan"],
        projector_plan=plan["tensorrt"]["projector"]["plan"],
        trtllm_merged=plan["tensorrt_llm"]["merged"]["engine_dir"],
        trtllm_base=plan["tensorrt_llm"]["base"]["engine_dir"],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    precision = opts.precision_choice()
    manifest = _manifest(checkpoint, info, tok, opts, files, precision, getattr(torch, opts.llm_dtype_name(precision)))
    manifest = _write_gpu_plan(out_dir, replace(manifest, dry_run=True), plan)
    manifest.write(out_dir)
    manifest = replace(manifest, repository=str(write_repository(out_dir, opts.profile, opts.repository)))
    manifest.write(out_dir)
    return manifest


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    opts: ExportOptions = ExportOptions(),
    llm_dir: str | Path | None = None,
    force: bool = False,
) -> ExportManifest:
    """Run the whole export; returns the manifest (also written to ``export.json``)."""
    if opts.dry_run:
        return plan_gpu_export(checkpoint, out_dir, opts, llm_dir, force)
    if opts.profile == "gpu":  # fail at once, before minutes of work, where engines cannot be built
        require_tensorrt()
        require_tensorrt_llm()
    opts.repository.long_form_segment()  # a bad segmenter option fails before minutes of work
    out_dir = Path(out_dir)
    _check_output_folder(out_dir, force)
    info = inspect_checkpoint(checkpoint, llm_dir)
    check_audio_limit(info, opts.engine.max_audio_seconds)
    llm_max_output_len(info, opts.llm_engine)
    precision = opts.precision_choice()  # before any work: a forced bf16 without bf16 units fails here
    llm_dtype = getattr(torch, opts.llm_dtype_name(precision))
    out_dir.mkdir(parents=True, exist_ok=True)
    # In stages, each freeing what it loaded before the next (peak: NeMo's SALM alone):
    # 1. the LLM folders, tensor by tensor from the checkpoint (no model in memory);
    # 2. NeMo's SALM; the parity references of its LLM; then its LLM is freed;
    # 3. the ONNX encoder/projector from NeMo's perception and NeMo's references for them; NeMo
    #    freed; the int8 encoder (if asked) and the ONNX graphs' parity rows;
    # 4. the exported LLMs' parity, one loaded at a time.
    tok = checkpoint_tokenizer(info)
    export_front_end(info, out_dir / "frontend")
    merged, base = export_llm(info, out_dir, dtype=llm_dtype)
    model, info = load_salm(checkpoint, llm_dir)
    refs = nemo_llm_references(model, info) if opts.parity else None
    free_llm(model)
    onnx = export_onnx(model, out_dir / "onnx", bf16_table=opts.profile == "gpu")
    perception_refs = nemo_perception_references(model, info) if opts.parity else []
    del model
    gc.collect()
    served_encoder = onnx.encoder
    encoder_precision = opts.encoder_precision_choice(precision).precision
    if encoder_precision == "int8":  # the fp32 graph stays beside it (the reference, and for re-use)
        served_encoder = quantize_encoder_int8(onnx.encoder)
    rows = perception_parity(perception_refs, out_dir, served_encoder.name, encoder_precision) if opts.parity else []
    del perception_refs
    manifest = _manifest(
        checkpoint,
        info,
        tok,
        opts,
        Files(
            frontend="frontend",
            encoder_onnx=str(served_encoder.relative_to(out_dir)),
            projector_onnx=str(onnx.projector.relative_to(out_dir)),
            llm_merged=merged.name,
            llm_base=base.name,
        ),
        precision,
        llm_dtype,
    )
    if opts.parity:
        report = finish_report(rows + llm_parity(refs, out_dir, llm_dtype))
        (out_dir / PARITY_REPORT).write_text(json.dumps(report, indent=2))
        (out_dir / PARITY_TABLE).write_text(parity_table(report))
        manifest = replace(manifest, parity_passed=report["passed"])
        if not report["passed"]:
            manifest.write(out_dir)
            raise CanaryTritonError(
                f"exported artifacts differ from NeMo beyond tolerance: see {out_dir / PARITY_REPORT}"
            )
    if opts.profile == "gpu":
        arch = gpu_arch_tag()
        plan = gpu_build_plan(info, opts, arch)
        manifest = _write_gpu_plan(out_dir, manifest, plan)
        enc_plan, proj_plan = build_encoder_engines(
            onnx.encoder,
            onnx.projector.with_name(PROJECTOR_BF16_ONNX),
            out_dir / "engines",
            info.encoder_dim,
            info.mel,
            info.subsampling,
            opts.engine,
            arch=arch,
        )
        manifest = manifest.with_files(
            encoder_plan=str(enc_plan.relative_to(out_dir)), projector_plan=str(proj_plan.relative_to(out_dir))
        )
        llm_opts = gpu_llm_options(info, opts)
        engines = [
            build_llm_engine(hf, out_dir / "trtllm" / name, llm_opts)
            for name, hf in (("merged", merged), ("base", base))
        ]
        manifest = manifest.with_files(
            trtllm_merged=str(engines[0].relative_to(out_dir)), trtllm_base=str(engines[1].relative_to(out_dir))
        )
    manifest.write(out_dir)
    manifest = replace(manifest, repository=str(write_repository(out_dir, opts.profile, opts.repository)))
    manifest.write(out_dir)
    return manifest
