"""``canary-triton export``: its arguments, and the :class:`ExportOptions` they make (the batching and
sizing defaults of the gpu profile come from the throughput model for the checkpoint).

The export pipeline imports torch and NeMo (seconds): only running the command imports it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from canary_triton import contract as C
from canary_triton.artifacts import as_json
from canary_triton.cli import arguments as A
from canary_triton.errors import CanaryTritonError
from canary_triton.export.options import ExportOptions
from canary_triton.export.repository_options import CPU_LLM_WEIGHTS, RepositoryOptions
from canary_triton.export.tensorrt_engine import DEFAULT_GPU_ARCH, EngineOptions
from canary_triton.export.trtllm_engine import LlmEngineOptions
from canary_triton.gpu.throughput import DEFAULT_GPU, EXPORT_FLAGS, GPUS, Assumptions, defaults_for_checkpoint
from canary_triton.longform.segmenter import VADS, SegmentOptions
from canary_triton.runtime.cpu_profile import CPU_ENCODER_PRECISIONS, split_threads

_SEGMENT = SegmentOptions()  # the long-form segmenter's defaults

HELP = (
    "Export a checkpoint: mel constants, ONNX encoder/projector, merged and base Qwen3 "
    "(+ TensorRT and TensorRT-LLM engines with --profile gpu), with a parity report against NeMo."
)


def add_export(add: A.AddCommand) -> None:
    """Register ``export``."""
    add_export_arguments(add("export", _cmd_export, HELP))


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Every argument of ``export`` on ``p``."""
    p.add_argument("checkpoint")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--profile", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--llm-dir", help=A.LLM_DIR_HELP)
    p.add_argument(
        "--llm-dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="dtype of the written Qwen3 weights (auto: float32 for cpu, bfloat16 for gpu)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "fp16", "bf16"],
        default="auto",
        help="cpu: the LLM's precision (auto: bf16 where the CPU has native bf16 units, AMX-BF16 or "
        "AVX-512 BF16, else fp32; fp32 is token-identical to NeMo fp32); gpu: encoder engine "
        "precision (auto: bf16)",
    )
    p.add_argument(
        "--cpu-encoder-precision",
        choices=("auto", *CPU_ENCODER_PRECISIONS),
        default="auto",
        help="cpu: the served encoder: fp32 (exact parity with NeMo) or int8 (its MatMuls quantized "
        "with ONNX Runtime: about twice as fast on CPU, bounded by WER; the fp32 graph stays beside it); "
        "auto: int8 when the LLM runs in bf16, fp32 when it runs in fp32",
    )
    p.add_argument(
        "--require-native-precision",
        action="store_true",
        help="cpu: fail instead of warning when bf16 is asked for on a CPU without native bf16 units",
    )

    sized = " (default: cpu %s; gpu: the throughput model's for the checkpoint, docs/gpu-throughput-model.md)"
    p.add_argument(
        "--max-batch", type=A.positive_int, help="gpu: encoder engine max batch" + sized % EngineOptions.max_batch
    )
    p.add_argument(
        "--opt-batch", type=A.positive_int, help="gpu: encoder engine optimal batch" + sized % EngineOptions.opt_batch
    )
    p.add_argument("--max-audio-seconds", type=A.audio_seconds, default=C.MAX_AUDIO_SECONDS)
    p.add_argument("--opt-audio-seconds", type=A.audio_seconds, default=10.0)
    p.add_argument(
        "--llm-max-batch",
        type=A.positive_int,
        help="requests in flight in the llm (CPU engine; gpu: TensorRT-LLM max batch and table size)"
        + sized % RepositoryOptions.llm_max_batch,
    )
    p.add_argument(
        "--llm-base-max-batch",
        type=A.positive_int,
        default=RepositoryOptions.llm_base_max_batch,
        help="cpu: requests in flight in llm_base (LLM mode, long text prompts)",
    )
    p.add_argument(
        "--triton-max-batch",
        type=A.positive_int,
        default=None,
        help="max_batch_size of every Triton model (default: --max-batch; gpu: at most --max-batch)",
    )
    p.add_argument(
        "--instances",
        type=A.positive_int,
        help="instances of the preprocessor and encoder" + sized % RepositoryOptions.encoder_instances,
    )
    p.add_argument(
        "--threads",
        type=int,
        help="cpu: threads of the encoder and of the LLM engine (default: "
        "the cores the server may run on, read when it starts, for both)",
    )
    p.add_argument("--encoder-threads", type=int, help="cpu: encoder threads (overrides --threads' share)")
    p.add_argument("--llm-threads", type=int, help="cpu: LLM engine threads (overrides --threads)")
    p.add_argument(
        "--llm-nice",
        type=int,
        default=RepositoryOptions.llm_nice,
        help="cpu: the LLM engine's threads run this much below the encoder's priority (0-19; 0 = equal "
        "shares): an encoder batch takes the cores while it computes, the LLM the rest of the time",
    )
    p.add_argument(
        "--queue-delay-us",
        type=int,
        default=RepositoryOptions.max_queue_delay_us,
        help="dynamic batching max queue delay (0 measured best on CPU: see benchmarks/serving_sweep.py)",
    )
    p.add_argument(
        "--max-queue-size",
        type=A.positive_int,
        default=RepositoryOptions.max_queue_size,
        help="requests queued per model beyond which new ones are rejected at once",
    )
    p.add_argument(
        "--queue-timeout-us",
        type=int,
        default=RepositoryOptions.queue_timeout_us,
        help="reject requests queued longer (0: never)",
    )
    p.add_argument(
        "--kv-cache-fraction",
        type=A.probability,
        help="gpu: kv_cache_free_gpu_mem_fraction" + sized % RepositoryOptions.kv_cache_free_gpu_mem_fraction,
    )
    p.add_argument(
        "--max-num-tokens",
        type=A.positive_int,
        help="gpu: TensorRT-LLM max_num_tokens (tokens per iteration)" + sized % LlmEngineOptions.max_num_tokens,
    )
    p.add_argument(
        "--max-inflight",
        type=A.positive_int,
        help="requests each BLS model (llm_unary, stream, LLM mode, long form, ask) forwards at once"
        + sized % RepositoryOptions.max_inflight,
    )
    p.add_argument(
        "--gpu-model",
        choices=sorted(GPUS),
        default=DEFAULT_GPU,
        help="gpu: the GPU whose data sheet sizes the throughput model's defaults (default %(default)s)",
    )
    p.add_argument(
        "--long-form-max-seconds",
        type=A.positive_float,
        default=RepositoryOptions.long_form_max_s,
        help="longest recording canary_qwen_long accepts",
    )
    p.add_argument(
        "--long-form-merge-seconds",
        type=A.audio_seconds,
        default=_SEGMENT.merge_s,
        help="long-form segments merge speech up to this span (at most the model's 40 s)",
    )
    p.add_argument(
        "--vad",
        choices=VADS,
        default=_SEGMENT.vad,
        help="long-form voice-activity detector (audio without speech is never sent to the model)",
    )
    p.add_argument(
        "--vad-threshold",
        type=A.probability,
        default=_SEGMENT.vad_threshold,
        help="silero: speech probability threshold, in (0, 1)",
    )
    p.add_argument(
        "--vad-min-speech-ms",
        type=A.milliseconds,
        default=1000 * _SEGMENT.min_speech_s,
        help="silero: shorter speech is dropped",
    )
    p.add_argument(
        "--vad-min-silence-ms",
        type=A.milliseconds,
        default=1000 * _SEGMENT.min_pause_s,
        help="shorter silences do not split speech",
    )
    p.add_argument(
        "--vad-speech-pad-ms",
        type=A.milliseconds,
        default=1000 * _SEGMENT.pad_s,
        help="audio kept before each speech region",
    )
    p.add_argument(
        "--silence-pad-ms",
        type=A.milliseconds,
        default=1000 * _SEGMENT.silence_pad_s,
        help="long-form: zeros added at both ends of each segment sent to the model",
    )
    p.add_argument(
        "--vad-threads",
        type=A.positive_int,
        default=_SEGMENT.vad_threads,
        help="silero: ONNX Runtime threads per long-form model instance (CPU in both profiles)",
    )
    p.add_argument(
        "--vad-gate",
        action="store_true",
        help='short form too: a clip with no speech (the --vad detector) returns "" without running '
        "the LLM (off: exact NeMo parity)",
    )
    p.add_argument(
        "--cpu-llm-weights",
        choices=CPU_LLM_WEIGHTS,
        default=RepositoryOptions.cpu_llm_weights,
        help="cpu: shared = llm (ASR) and llm_base (LLM mode) map one copy of the base weights, ASR "
        "adding the LoRA at run time; merged = llm maps the LoRA-merged copy (a second copy in memory)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=A.max_new_tokens,
        default=C.MAX_NEW_TOKENS_LIMIT,
        help="gpu: longest output the TensorRT-LLM engine is built for",
    )
    p.add_argument(
        "--weight-quant",
        type=A.weight_quant,
        default="none",
        help="gpu: TensorRT-LLM weight-only quantisation: none, int8 or int4",
    )
    p.add_argument(
        "--mel-bucket-seconds",
        type=A.audio_seconds,
        default=RepositoryOptions.mel_bucket_s,
        help="the preprocessor pads mel features to multiples of this span so the encoder batches "
        "clips of similar length",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="gpu: write the model repository, export.json and engine_build.json (every TensorRT and "
        "TensorRT-LLM build setting) from the checkpoint's config alone; build nothing",
    )
    p.add_argument(
        "--gpu-arch", default=DEFAULT_GPU_ARCH, help="--dry-run: name the plans for this GPU (sm80, sm90, sm100)"
    )
    p.add_argument("--skip-parity", action="store_true", help="do not compare the artifacts with NeMo")
    p.add_argument("--force", action="store_true", help="write into a non-empty output folder")


def export_options(argv: Sequence[str]) -> ExportOptions:
    """The ExportOptions ``canary-triton export ARGV`` runs with (its defaults included)."""
    parser = argparse.ArgumentParser(prog="canary-triton export", description=HELP)
    add_export_arguments(parser)
    return _export_options(parser.parse_args(argv))


def _cmd_export(args: argparse.Namespace) -> int:
    from canary_triton.export.pipeline import export_checkpoint

    try:
        opts = _export_options(args)
    except ValueError as e:  # an option outside its range: one line naming it
        raise CanaryTritonError(str(e)) from None
    manifest = export_checkpoint(args.checkpoint, args.output, opts, llm_dir=args.llm_dir, force=args.force)
    print(
        json.dumps(
            {
                "output": str(Path(args.output).resolve()),
                "profile": manifest.profile,
                "dry_run": bool(manifest.dry_run),
                "parity_passed": manifest.parity_passed,
                "files": as_json(manifest.files),
            },
            indent=2,
        )
    )
    return 0


def _sizing(args: argparse.Namespace) -> tuple[dict, tuple[str, ...]]:
    """The batching and sizing options (gpu.throughput.GpuDefaults fields): an explicit value wins;
    else the gpu profile's come from the throughput model for the checkpoint being exported
    (gpu.throughput.derive_gpu_defaults), the cpu profile's are the option classes' defaults.
    Returns the values and the fields that came from the model."""
    given = {k: getattr(args, flag[2:].replace("-", "_")) for k, flag in EXPORT_FLAGS.items()}
    if args.profile != "gpu":
        return {
            "llm_max_batch": RepositoryOptions.llm_max_batch,
            "max_num_tokens": LlmEngineOptions.max_num_tokens,
            "kv_cache_free_gpu_mem_fraction": RepositoryOptions.kv_cache_free_gpu_mem_fraction,
            "encoder_max_batch": EngineOptions.max_batch,
            "encoder_opt_batch": EngineOptions.opt_batch,
            "encoder_instances": RepositoryOptions.encoder_instances,
            "max_inflight": RepositoryOptions.max_inflight,
            **{k: v for k, v in given.items() if v is not None},
        }, ()
    unset = tuple(k for k, v in given.items() if v is None)
    if not unset:
        return given, ()
    derived = defaults_for_checkpoint(
        args.checkpoint, args.llm_dir, args.gpu_model, Assumptions(mel_bucket_seconds=args.mel_bucket_seconds)
    )
    values = {k: getattr(derived, k) if v is None else v for k, v in given.items()}
    if given["max_inflight"] is None:  # the BLS models forward as many requests as the LLM holds
        values["max_inflight"] = values["llm_max_batch"]
    return values, unset


def _export_options(args: argparse.Namespace) -> ExportOptions:
    sized, from_model = _sizing(args)
    max_batch = sized["encoder_max_batch"]
    triton_max_batch = max_batch if args.triton_max_batch is None else args.triton_max_batch
    explicit_threads = any(v is not None for v in (args.threads, args.encoder_threads, args.llm_threads))
    threads = split_threads(args.threads, args.encoder_threads, args.llm_threads)
    return ExportOptions(
        profile=args.profile,
        llm_dtype=args.llm_dtype,
        precision=args.precision,
        require_native_precision=args.require_native_precision,
        cpu_encoder_precision=args.cpu_encoder_precision,
        engine=EngineOptions(
            precision="bf16" if args.precision == "auto" else args.precision,
            max_batch=max_batch,
            opt_batch=min(sized["encoder_opt_batch"], max_batch),
            max_audio_seconds=args.max_audio_seconds,
            opt_audio_seconds=min(args.opt_audio_seconds, args.max_audio_seconds),
        ),
        llm_engine=LlmEngineOptions(
            max_batch=sized["llm_max_batch"],
            weight_quant=args.weight_quant,
            max_new_tokens=args.max_new_tokens,
            max_num_tokens=sized["max_num_tokens"],
        ),
        repository=RepositoryOptions(
            max_batch=triton_max_batch,
            preprocessor_instances=sized["encoder_instances"],
            encoder_instances=sized["encoder_instances"],
            llm_max_batch=sized["llm_max_batch"],
            llm_base_max_batch=args.llm_base_max_batch,
            encoder_threads=threads.encoder if explicit_threads else None,
            llm_threads=threads.llm if explicit_threads else None,
            llm_nice=args.llm_nice,
            max_queue_delay_us=args.queue_delay_us,
            max_queue_size=args.max_queue_size,
            queue_timeout_us=args.queue_timeout_us,
            kv_cache_free_gpu_mem_fraction=sized["kv_cache_free_gpu_mem_fraction"],
            max_inflight=sized["max_inflight"],
            long_form_max_s=args.long_form_max_seconds,
            long_form_merge_s=args.long_form_merge_seconds,
            long_form_vad=args.vad,
            long_form_vad_threshold=args.vad_threshold,
            long_form_vad_min_speech_s=args.vad_min_speech_ms / 1000,
            long_form_vad_min_silence_s=args.vad_min_silence_ms / 1000,
            long_form_vad_pad_s=args.vad_speech_pad_ms / 1000,
            long_form_silence_pad_s=args.silence_pad_ms / 1000,
            long_form_vad_threads=args.vad_threads,
            vad_gate=args.vad_gate,
            mel_bucket_s=args.mel_bucket_seconds,
            cpu_llm_weights=args.cpu_llm_weights,
        ),
        parity=not args.skip_parity,
        dry_run=args.dry_run,
        gpu_arch=args.gpu_arch,
        gpu_model=args.gpu_model,
        sized_by_model=from_model,
    )
