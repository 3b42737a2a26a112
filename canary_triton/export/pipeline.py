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

import numpy as np
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
from canary_triton.checkpoint.oracle import pad_batch
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
from canary_triton.frontend.features import load_front_end
from canary_triton.gpu.throughput import Assumptions, GpuDefaults, ModelShapes, record
from canary_triton.runtime.cpu_profile import instruction_set
from canary_triton.runtime.onnx_session import OnnxEncoderProjector

# NeMo and transformers (seconds to import) are imported by the parity steps that run them.

PARITY_REPORT = "parity.json"
PARITY_TABLE = "parity.md"
#: fp32 parity limits (max abs): features/embeddings, and LLM logits (merged vs unmerged LoRA
#: sums in another order, which grows with depth and width).
FEATURE_TOL = 1e-3
LOGIT_TOL = 1e-3
REL_TOL = 1e-4
#: bf16 LLM (CPU profile on a CPU with bf16 units): logits relative to the largest reference logit.
#: bf16 keeps 8 significant bits (relative rounding 2^-9 per value), and the error of a long sum
#: of such products grows with depth and width; NeMo fp32 is the reference.
BF16_REL_TOL = 5e-2
#: int8 encoder (dynamic quantization): its features relative to the largest reference value. A
#: sanity bound (a broken graph is off by the scale itself); accuracy is bounded by WER instead.
INT8_REL_TOL = 1e-1


#: Probe clip lengths (seconds): short, typical and the 40 s limit.
PROBE_SECONDS = (0.5, 1.0, 7.3, 20.0, 40.0)


def probe_clips(sample_rate: int, seconds: tuple[float, ...] = PROBE_SECONDS) -> list[np.ndarray]:
    """Fixed, audio-like probe signals (harmonics with an envelope, plus noise)."""
    clips = []
    for i, sec in enumerate(seconds):
        rng = np.random.default_rng(1000 + i)
        t = np.arange(int(sec * sample_rate)) / sample_rate
        x = sum(np.sin(2 * np.pi * (110 + 37 * i) * k * t + k) / k for k in range(1, 6))
        env = 0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t)
        clips.append((0.1 * x * env + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return clips


def diff(ours, ref) -> dict[str, float]:
    """Max abs difference and the same relative to the reference's largest magnitude."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    max_abs = float(np.abs(a - b).max()) if a.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    return {"max_abs": max_abs, "rel": max_abs / scale if scale > 0 else max_abs}


@torch.no_grad()
def nemo_perception_references(model, info: CheckpointInfo) -> list[dict[str, Any]]:
    """NeMo's mel, encoder output and projection of the probe clips, each alone and all batched
    (small tensors, kept so the export can free NeMo before it loads the ONNX graphs)."""
    p = model.perception
    sr = info.mel.sample_rate
    clips = probe_clips(sr)
    refs = []
    for mode, group in [*(("single", [c]) for c in clips), ("batched", clips)]:
        audio, lens = pad_batch(group)
        ref_mel, ref_mel_len = p.preprocessor(input_signal=audio, length=lens)
        ref_enc, ref_len = p.encoder(audio_signal=ref_mel, length=ref_mel_len)
        ref_enc = ref_enc.transpose(1, 2)
        refs.append(
            {
                "mode": mode,
                "seconds": [round(len(c) / sr, 3) for c in group],
                "audio": audio,
                "lens": lens,
                "mel": ref_mel,
                "mel_len": ref_mel_len,
                "enc": ref_enc,
                "enc_len": ref_len,
                "proj": p.proj(ref_enc),
            }
        )
    return refs


@torch.no_grad()
def _perception_rows(ref: dict[str, Any], front_end, runner, encoder_precision: str = "fp32") -> list[dict[str, Any]]:
    mel, mel_len = front_end(ref["audio"], ref["lens"])
    enc, enc_len = runner.encode(ref["mel"].numpy(), ref["mel_len"].numpy())
    table = runner.project(enc)
    rows = []
    for i, seconds in enumerate(ref["seconds"]):
        m, n = int(ref["mel_len"][i]), int(ref["enc_len"][i])
        lengths_equal = int(mel_len[i]) == m and int(enc_len[i]) == n
        for stage, ours, theirs in (
            ("mel", mel[i, :, :m], ref["mel"][i, :, :m]),
            ("encoder", enc[i, :n], ref["enc"][i, :n]),
            ("projector", table[i, :n], ref["proj"][i, :n]),
        ):
            rows.append(
                {
                    "stage": stage,
                    "seconds": seconds,
                    "mode": ref["mode"],
                    "lengths_equal": lengths_equal,
                    **diff(ours, theirs),
                    # the encoder's error carries into the projector's table
                    **({"precision": encoder_precision} if stage != "mel" and encoder_precision != "fp32" else {}),
                }
            )
    return rows


@torch.no_grad()
def nemo_llm_references(model, info: CheckpointInfo) -> dict[str, Any]:
    """NeMo's LLM logits for the parity report, computed while NeMo's LLM is loaded (small
    tensors, kept so the export can free NeMo's LLM before the ONNX stage): ASR mode (the 1 s
    probe spliced into the prompt, LoRA unmerged) and LLM mode (text, adapter disabled)."""
    from nemo.collections.speechlm2.models.salm import replace_placeholders_and_build_targets

    sr = info.mel.sample_rate
    clip = probe_clips(sr)[1]
    tok = checkpoint_tokenizer(info)
    prompt = tok.asr_prompt_ids()
    audio = torch.from_numpy(clip)[None]
    proj, proj_len = model.perception(input_signal=audio, input_signal_length=torch.tensor([audio.shape[1]]))
    rows_audio = proj[0, : int(proj_len[0])]
    ids = torch.tensor([prompt])
    spliced, _, mask = replace_placeholders_and_build_targets(
        input_ids=ids,
        embeds=model.embed_tokens(ids.where(ids != tok.ids.audio_placeholder, 0)),
        padding_id=tok.ids.pad,
        placeholder_id=tok.ids.audio_placeholder,
        replacements=[rows_audio],
        target_ids=None,
    )
    text_ids = torch.tensor([tok.llm_prompt_ids("Summarize the transcript in one sentence.")])
    with model.llm.disable_adapter():
        ref_text = model(model.embed_tokens(text_ids))["logits"][0]
    return {
        "seconds": round(len(clip) / sr, 3),
        "ids": ids,
        "placeholder_at": prompt.index(tok.ids.audio_placeholder),
        "rows_audio": rows_audio,
        "asr_logits": model(spliced, attention_mask=mask)["logits"][0],
        "text_ids": text_ids,
        "text_logits": ref_text,
    }


@torch.no_grad()
def perception_parity(
    refs: list[dict[str, Any]], out_dir: Path, encoder: str = ENCODER_ONNX, encoder_precision: str = "fp32"
) -> list[dict[str, Any]]:
    """Mel, encoder and projector rows against :func:`nemo_perception_references`: each probe clip
    alone and all batched (``encoder``: the served graph under ``onnx/``, in ``encoder_precision``)."""
    front_end = load_front_end(out_dir / "frontend")
    # As many threads as the NeMo references ran with: ONNX Runtime's CPU kernels split their
    # outputs between threads, not their sums, so the rows are the same as with one.
    runner = OnnxEncoderProjector(
        out_dir / "onnx" / encoder, out_dir / "onnx" / PROJECTOR_ONNX, threads=torch.get_num_threads()
    )
    return [row for ref in refs for row in _perception_rows(ref, front_end, runner, encoder_precision)]


@torch.no_grad()
def llm_parity(refs: dict[str, Any], out_dir: Path, llm_dtype: torch.dtype = torch.float32) -> list[dict[str, Any]]:
    """The exported merged and base Qwen3, one loaded at a time in ``llm_dtype`` (as served),
    against NeMo's references (:func:`nemo_llm_references`)."""
    from transformers import AutoModelForCausalLM

    precision = {"float32": "fp32", "bfloat16": "bf16"}.get(str(llm_dtype).replace("torch.", ""), str(llm_dtype))
    ids, k = refs["ids"], refs["placeholder_at"]
    merged = AutoModelForCausalLM.from_pretrained(str(out_dir / "llm_merged"), dtype=llm_dtype).eval()
    emb = merged.get_input_embeddings()
    ours_in = torch.cat([emb(ids[0, :k]), refs["rows_audio"].to(llm_dtype), emb(ids[0, k + 1 :])])[None]
    rows = [
        {
            "stage": "llm_merged_logits",
            "seconds": refs["seconds"],
            "mode": "single",
            "lengths_equal": True,
            "precision": precision,
            **diff(merged(inputs_embeds=ours_in).logits[0].float(), refs["asr_logits"]),
        }
    ]
    del merged, emb, ours_in
    gc.collect()
    base = AutoModelForCausalLM.from_pretrained(str(out_dir / "llm_base"), dtype=llm_dtype).eval()
    rows.append(
        {
            "stage": "llm_base_logits",
            "seconds": 0.0,
            "mode": "text",
            "lengths_equal": True,
            "precision": precision,
            **diff(base(input_ids=refs["text_ids"]).logits[0].float(), refs["text_logits"]),
        }
    )
    return rows


def finish_report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def ok(row: dict[str, Any]) -> bool:
        if row.get("precision") == "bf16":
            return row["lengths_equal"] and row["rel"] <= BF16_REL_TOL
        if row.get("precision") == "int8":
            return row["lengths_equal"] and row["rel"] <= INT8_REL_TOL
        tol = LOGIT_TOL if row["stage"].startswith("llm") else FEATURE_TOL
        return row["lengths_equal"] and row["max_abs"] <= tol and row["rel"] <= REL_TOL

    for row in rows:
        row["ok"] = ok(row)
    return {
        "tolerances": {
            "features_max_abs": FEATURE_TOL,
            "logits_max_abs": LOGIT_TOL,
            "rel": REL_TOL,
            "bf16_rel": BF16_REL_TOL,
            "int8_rel": INT8_REL_TOL,
        },
        "rows": rows,
        "passed": all(r["ok"] for r in rows),
    }


def parity_report(model, info: CheckpointInfo, out_dir: Path, llm_dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Compare every CPU artifact with NeMo's SALM (fp32), the whole model in memory (the export
    itself runs the same steps in stages: see :func:`export_checkpoint`)."""
    return finish_report(
        perception_parity(nemo_perception_references(model, info), out_dir)
        + llm_parity(nemo_llm_references(model, info), out_dir, llm_dtype)
    )


def parity_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table (written as parity.md)."""
    lines = [
        "| stage | clip (s) | mode | precision | max abs | relative | lengths equal | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['stage']} | {r['seconds']} | {r['mode']} | {r.get('precision', 'fp32')} | {r['max_abs']:.2e} | "
            f"{r['rel']:.2e} | "
            f"{r['lengths_equal']} | {'yes' if r['ok'] else 'NO'} |"
        )
    tol = report["tolerances"]
    lines.append("")
    lines.append(
        f"Tolerances: features/embeddings max abs {tol['features_max_abs']:g}, logits max abs "
        f"{tol['logits_max_abs']:g}, relative {tol['rel']:g}; bf16 LLM logits relative {tol['bf16_rel']:g}; "
        f"int8 encoder features relative {tol['int8_rel']:g}. "
        f"Passed: {report['passed']}."
    )
    return "\n".join(lines) + "\n"


def _free_llm(model) -> None:
    """Drop NeMo's LLM (and its embedding) from the SALM: only the perception is needed after."""
    for name in ("llm", "embed_tokens"):
        if isinstance(getattr(model, name, None), torch.nn.Module):
            delattr(model, name)
    gc.collect()


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
    _free_llm(model)
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
