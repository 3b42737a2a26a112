"""The Triton model repository, generated from one declarative description per profile.

Both profiles have the same model names, tensor names and ensemble wiring; only the backends of
``encoder``, ``projector`` and ``llm`` differ (Python + ONNX Runtime / PyTorch on CPU; TensorRT
plans and the ``tensorrtllm`` backend on GPU). Every ``config.pbtxt`` is rendered by
:func:`canary_triton.export.pbtxt.render`; the settings are :class:`RepositoryOptions`
(:mod:`canary_triton.export.repository_options`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.contract import TensorSpec
from canary_triton.errors import CanaryTritonError
from canary_triton.export.model_shells import write_shell
from canary_triton.export.pbtxt import Batching, ModelDecl, Step, render
from canary_triton.export.repository_options import RepositoryOptions
from canary_triton.model_params import LlmParams

REPOSITORY_DIR = "model_repository"


def _with(spec: TensorSpec, **kw: Any) -> TensorSpec:
    return replace(spec, **kw)


@dataclass(frozen=True)
class _Tensors:
    """The tensors whose shapes or types come from the checkpoint and the profile, shared by the
    models' declarations (``dims`` as in config.pbtxt: without the batch dimension)."""

    mel: TensorSpec  # [n_mels, -1], not ragged: the preprocessor pads to length buckets
    encoded: TensorSpec  # [-1, d_enc], ragged
    table_in: TensorSpec  # the prompt table the llm takes: [-1, hidden] in the profile's dtype
    table_out: TensorSpec  # the prompt table the projector gives: not optional, not ragged
    llm_inputs: tuple[TensorSpec, ...]
    llm_outputs: tuple[TensorSpec, ...]
    batching: Batching


def _tensors(manifest: ExportManifest, profile: str, opts: RepositoryOptions) -> _Tensors:
    hidden = manifest.model.llm_hidden
    table_dtype = C.PROMPT_TABLE_DTYPE[profile]
    table_in = _with(C.PROMPT_EMBEDDING_TABLE, dims=(-1, hidden), dtype=table_dtype)
    return _Tensors(
        # Not ragged: the preprocessor pads mel to length buckets, so the dynamic batcher groups equal
        # shapes only, in both profiles (a TensorRT plan batches nothing else).
        mel=_with(C.MEL, dims=(manifest.model.mel.n_mels, -1)),
        encoded=_with(C.ENCODED, dims=(-1, manifest.model.encoder_dim), ragged=True),
        table_in=table_in,
        table_out=_with(table_in, optional=False, ragged=False),
        llm_inputs=(
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
        ),
        llm_outputs=(C.OUTPUT_IDS, C.SEQUENCE_LENGTH),
        batching=Batching(opts.max_queue_delay_us, opts.max_queue_size, opts.queue_timeout_us),
    )


def _python(name: str, t: _Tensors, opts: RepositoryOptions, inputs, outputs, **kw: Any) -> ModelDecl:
    """A Python model of the CPU runtime, dynamically batched, with its model_params parameters."""
    return ModelDecl(
        name, "python", opts.max_batch, inputs, outputs, batching=t.batching, parameters=opts.parameters(name), **kw
    )


def _preprocessor(t: _Tensors, opts: RepositoryOptions) -> ModelDecl:
    """audio -> mel features and the llm's request tensors (prompt ids, lengths, ids to stop at)."""
    outputs = (
        t.mel,
        C.MEL_LENGTH,
        _with(C.INPUT_IDS, ragged=False),
        _with(C.INPUT_LENGTHS, reshape=None),
        _with(C.REQUEST_OUTPUT_LEN, reshape=None),
        _with(C.END_ID, optional=False, reshape=None),
        _with(C.PAD_ID, optional=False, reshape=None),
    )
    inputs = (_with(C.AUDIO, ragged=True), C.MAX_NEW_TOKENS)
    return _python(C.PREPROCESSOR_MODEL, t, opts, inputs, outputs, instance_count=opts.preprocessor_instances)


def _cpu_models(t: _Tensors, opts: RepositoryOptions) -> tuple[ModelDecl, ModelDecl, ModelDecl, ModelDecl]:
    """The CPU profile's encoder, projector, llm and llm_base: Python models over ONNX Runtime and
    the in-process LLM engine (one decoupled model each for ASR and LLM mode)."""
    enc = _python(
        C.ENCODER_MODEL,
        t,
        opts,
        (t.mel, C.MEL_LENGTH),
        (t.encoded, C.ENCODED_LENGTH),
        instance_count=opts.encoder_instances,
    )
    proj = _python(C.PROJECTOR_MODEL, t, opts, (t.encoded,), (t.table_out, C.PROMPT_VOCAB_SIZE))
    llm = _python(C.LLM_MODEL, t, opts, t.llm_inputs, t.llm_outputs, decoupled=True)
    llm_base = replace(llm, name=C.LLM_BASE_MODEL, parameters=opts.parameters(C.LLM_BASE_MODEL))
    return enc, proj, llm, llm_base


def _gpu_models(
    t: _Tensors, manifest: ExportManifest, opts: RepositoryOptions, export_dir: Path
) -> tuple[ModelDecl, ModelDecl, ModelDecl, ModelDecl]:
    """The GPU profile's encoder, projector (TensorRT plans, one per GPU architecture), llm and
    llm_base (the ``tensorrtllm`` backend on the merged and the base engine)."""
    files = manifest.files
    if files.encoder_plan is None or files.projector_plan is None:
        raise CanaryTritonError(
            "the export holds no TensorRT plans: run `canary-triton export --profile gpu` on the GPU"
        )
    enc = ModelDecl(
        C.ENCODER_MODEL,
        "tensorrt_plan",
        opts.max_batch,
        (_with(t.mel, ragged=False), C.MEL_LENGTH),
        (_with(t.encoded, ragged=False), C.ENCODED_LENGTH),
        instance_count=opts.encoder_instances,
        kind="KIND_GPU",
        batching=t.batching,
        cc_model_filenames=_cc_files(export_dir / files.encoder_plan),
    )
    proj = ModelDecl(
        C.PROJECTOR_MODEL,
        "tensorrt_plan",
        opts.max_batch,
        (_with(t.encoded, ragged=False),),
        (t.table_out,),
        kind="KIND_GPU",
        batching=t.batching,
        cc_model_filenames=_cc_files(export_dir / files.projector_plan),
    )
    llm = ModelDecl(
        C.LLM_MODEL,
        "tensorrtllm",
        opts.max_batch,
        t.llm_inputs,
        t.llm_outputs,
        batching=t.batching,
        decoupled=True,
        parameters=_trtllm_parameters(export_dir, files.trtllm_merged, files.llm_merged, opts, kv_reuse=False),
        notes=TRTLLM_NOTES,
    )
    llm_base = replace(
        llm,
        name=C.LLM_BASE_MODEL,
        parameters=_trtllm_parameters(export_dir, files.trtllm_base, files.llm_base, opts, kv_reuse=True),
    )
    return enc, proj, llm, llm_base


def _ensemble(pre: ModelDecl, opts: RepositoryOptions) -> ModelDecl:
    """``canary_qwen``: preprocessor -> encoder -> projector -> llm_unary -> postprocessor."""
    return ModelDecl(
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


def _shared_models(t: _Tensors, opts: RepositoryOptions) -> dict[str, ModelDecl]:
    """The Python models that are the same in both profiles: the postprocessor and the BLS models
    over the pipeline (llm_unary, the ensemble's step; streaming, LLM mode, long form unary and
    streamed, ask)."""
    audio = _with(C.AUDIO, ragged=True)
    sampling = (C.MAX_NEW_TOKENS, C.TEMPERATURE, C.TOP_P, C.SEED)
    long = _python(C.LONG_FORM_MODEL, t, opts, (audio, C.MAX_NEW_TOKENS), (C.TRANSCRIPT, C.SEGMENTS))
    models = (
        _python(C.LLM_UNARY_MODEL, t, opts, t.llm_inputs, t.llm_outputs),
        _python(C.POSTPROCESSOR_MODEL, t, opts, (C.OUTPUT_IDS, C.SEQUENCE_LENGTH), (C.TRANSCRIPT,)),
        _python(C.STREAM_MODEL, t, opts, (audio, C.MAX_NEW_TOKENS), (C.TRANSCRIPT,), decoupled=True),
        _python(C.LLM_MODE_MODEL, t, opts, (C.TEXT_INPUT, *sampling), (C.TEXT_OUTPUT, C.FINISH_REASON)),
        long,
        replace(long, name=C.LONG_FORM_STREAM_MODEL, decoupled=True),
        _python(C.ASK_MODEL, t, opts, (audio, C.TEXT_INPUT, *sampling), (C.TRANSCRIPT, C.TEXT_OUTPUT, C.FINISH_REASON)),
    )
    return {m.name: m for m in models}


def describe(
    manifest: ExportManifest, profile: str, opts: RepositoryOptions, export_dir: Path = Path(".")
) -> list[ModelDecl]:
    """The whole repository as declarations (no files); ``export_dir`` holds the GPU engines."""
    if profile not in ("cpu", "gpu"):
        raise CanaryTritonError(f"unknown profile {profile!r}; expected cpu or gpu")
    t = _tensors(manifest, profile, opts)
    pre = _preprocessor(t, opts)
    if profile == "cpu":
        enc, proj, llm, llm_base = _cpu_models(t, opts)
    else:
        enc, proj, llm, llm_base = _gpu_models(t, manifest, opts, export_dir)
    bls = _shared_models(t, opts)
    return [
        pre,
        enc,
        proj,
        llm,
        bls[C.LLM_UNARY_MODEL],
        bls[C.POSTPROCESSOR_MODEL],
        _ensemble(pre, opts),
        bls[C.STREAM_MODEL],
        llm_base,
        bls[C.LLM_MODE_MODEL],
        bls[C.LONG_FORM_MODEL],
        bls[C.LONG_FORM_STREAM_MODEL],
        bls[C.ASK_MODEL],
    ]


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
