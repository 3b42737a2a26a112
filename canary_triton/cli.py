"""``canary-triton``: one command, with subcommands.

Errors the user can fix print as one line (``error: ...``) with exit code 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from canary_triton import __version__
from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest, as_json
from canary_triton.checkpoint.reader import checkpoint_tokenizer, inspect_checkpoint, read_weight_shapes
from canary_triton.client.commands import CLIENT_COMMANDS
from canary_triton.client.commands import register as register_client
from canary_triton.client.transcribe import ClientOptions, transcribe
from canary_triton.errors import CanaryTritonError, CheckpointError
from canary_triton.export.options import ExportOptions
from canary_triton.export.repository import CPU_LLM_WEIGHTS, RepositoryOptions
from canary_triton.export.tensorrt_engine import DEFAULT_GPU_ARCH, EngineOptions
from canary_triton.export.trtllm_engine import FP8_REFUSAL, SUPPORTED_WEIGHT_QUANT, LlmEngineOptions
from canary_triton.fixtures.tiny import TINY_LONG_FORM_MERGE_S, make_tiny_random
from canary_triton.fixtures.train import train_fixture
from canary_triton.frontend.audio import load_audio
from canary_triton.gateway.command import register as register_gateway
from canary_triton.gpu.throughput import DEFAULT_GPU, EXPORT_FLAGS, GPUS, Assumptions, defaults_for_checkpoint
from canary_triton.longform.segmenter import VADS, SegmentOptions
from canary_triton.runtime.cpu_profile import CPU_ENCODER_PRECISIONS, split_threads
from canary_triton.serving.tritonserver import ServerOptions, TritonServer, free_port, run_forever
from canary_triton.serving.watchdog import WatchdogOptions, probe

# The export pipeline and the oracle import torch and NeMo (seconds): only the commands that run
# them import them, so `canary-triton --help` and the client commands start at once.

_SEGMENT = SegmentOptions()  # the long-form segmenter's defaults

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_CHECKPOINT = ASSETS / "tiny-trained"
DEMO_HELDOUT = ASSETS / "speech" / "heldout"
LLM_DIR_HELP = (
    "Qwen3-1.7B folder (config.json + tokenizer); default: found as NeMo does, beside the checkpoint, "
    "then config.json's pretrained_llm as a folder or a hub id in the local Hugging Face cache"
)
DEMO_SAMPLE = DEMO_HELDOUT / "heldout_000.flac"


def _cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_checkpoint(args.checkpoint, args.llm_dir)
    tok = checkpoint_tokenizer(info)
    shapes = read_weight_shapes(info.paths.weights)
    report = {
        "checkpoint": str(info.paths.root),
        "tokenizer": str(info.paths.tokenizer_dir),
        "llm_config": str(info.paths.llm_config_dir / "config.json"),
        "tensors": len(shapes),
        "encoder_dim": info.encoder_dim,
        "encoder_layers": int(info.cfg["perception"]["encoder"].get("n_layers", 0)),
        "subsampling_factor": info.subsampling.factor,
        "llm_hidden": info.llm_hidden,
        "vocab_rows": info.vocab_rows,
        "lora": {
            "r": info.lora_r,
            "alpha": info.lora_alpha,
            "scale": info.lora_scale,
            "targets": list(info.lora_targets),
        },
        "mel": info.mel.__dict__,
        "special_ids": tok.ids.__dict__,
        "asr_prompt_ids": tok.asr_prompt_ids(),
        "max_audio_seconds": C.MAX_AUDIO_SECONDS,
        "max_audio_frames": info.num_audio_frames(C.max_audio_samples(info.mel)),
    }
    print(json.dumps(report, indent=2))
    return 0


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
    """The batching and sizing options (gpu_throughput.GpuDefaults fields): an explicit value wins;
    else the gpu profile's come from the throughput model for the checkpoint being exported
    (gpu_throughput.derive_gpu_defaults), the cpu profile's are the option classes' defaults.
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


def export_options(argv: Sequence[str]):
    """The ExportOptions ``canary-triton export ARGV`` runs with (its defaults included)."""
    args = build_parser().parse_args(["export", *argv])
    return _export_options(args)


def _export_options(args):
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


def _cmd_serve(args: argparse.Namespace) -> int:
    repo = Path(args.repository)
    if (repo / "model_repository").is_dir():  # an export folder: serve its repository
        repo = repo / "model_repository"
    if not repo.is_dir():
        raise CanaryTritonError(f"model repository {repo} does not exist; create it with `canary-triton export`")

    opts = ServerOptions(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        host=args.host,
        log_verbose=args.log_verbose,
        extra_args=tuple(args.triton_arg or ()),
        exit_timeout_s=args.exit_timeout,
        start_timeout_s=args.start_timeout,
        admin_key=os.environ.get("CANARY_TRITON_ADMIN_KEY") or None,
        allow_shared_memory=args.allow_shared_memory,
        supervise_stubs=not args.no_stub_supervisor,
        watchdog=None
        if args.no_watchdog
        else WatchdogOptions(interval_s=args.watchdog_interval, deadline_s=args.watchdog_deadline),
    )
    server = TritonServer(repo, opts, log_path=args.log_file)
    return run_forever(server, [f"models: {', '.join(sorted(p.name for p in repo.iterdir() if p.is_dir()))}"])


def _cmd_probe(args: argparse.Namespace) -> int:
    result = probe(args.url, args.deadline)
    print(f"{'serving' if result.ok else 'not serving'} ({result.seconds:.2f} s): {result.detail}")
    return 0 if result.ok else 1


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _max_new_tokens(text: str) -> int:
    value = int(text)
    if not 1 <= value <= C.MAX_NEW_TOKENS_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {C.MAX_NEW_TOKENS_LIMIT}, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _audio_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= C.MAX_AUDIO_SECONDS:
        raise argparse.ArgumentTypeError(f"must be in (0, {C.MAX_AUDIO_SECONDS:g}] seconds, got {value:g}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _milliseconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 ms, got {text}")
    return value


def _weight_quant(text: str) -> str:
    if text == "fp8":
        raise argparse.ArgumentTypeError(FP8_REFUSAL)
    if text not in SUPPORTED_WEIGHT_QUANT:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(SUPPORTED_WEIGHT_QUANT)}, got {text!r}")
    return text


def _cmd_make_fixture(args: argparse.Namespace) -> int:
    if args.kind == "tiny-random":
        print(make_tiny_random(args.out, seed=1234 if args.seed is None else args.seed))
        return 0

    return train_fixture(Path(args.out), Path(args.heldout) if args.heldout else None, args.seed)


def _cmd_reference(args: argparse.Namespace) -> int:
    """Transcribe files in-process with NeMo's SALM (the oracle): the ground truth for serving."""
    from canary_triton.checkpoint.oracle import Oracle

    oracle = Oracle.from_checkpoint(args.checkpoint, args.llm_dir)
    audios = [load_audio(f, oracle.info.mel.sample_rate) for f in args.audio]
    limit = C.max_audio_samples(oracle.info.mel)
    for f, a in zip(args.audio, audios):
        if len(a) > limit:
            raise CanaryTritonError(
                f"{f} is {len(a) / oracle.info.mel.sample_rate:.1f} s long; the limit is {C.MAX_AUDIO_SECONDS:.0f} s"
            )
    for f, text in zip(args.audio, oracle.transcribe(audios, max_new_tokens=args.max_new_tokens)):
        print(f"{f}\t{text}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Export the checkpoint (once), start tritonserver, transcribe a sample over gRPC, stop."""
    from canary_triton.export.pipeline import export_checkpoint

    checkpoint = Path(args.checkpoint) if args.checkpoint else DEMO_CHECKPOINT
    if not args.checkpoint and not (checkpoint / "model.safetensors").is_file():
        print(f"building the demo checkpoint in {checkpoint} (CPU, minutes)...", file=sys.stderr)
        if train_fixture(checkpoint) != 0:
            raise CanaryTritonError("training the demo checkpoint did not reach its WER target")
    work = Path(args.work_dir).expanduser()
    export_dir = work / "export"

    # the bundled checkpoint knows single utterances: its long-form segments hold one each
    repo = RepositoryOptions() if args.checkpoint else RepositoryOptions(long_form_merge_s=TINY_LONG_FORM_MERGE_S)
    wanted = (str(checkpoint.resolve()), asdict(repo.long_form_segment()))
    try:
        old = ExportManifest.read(export_dir)
        recorded = (old.checkpoint, old.options.long_form_segmenter)
    except CheckpointError:  # not exported yet, or by a canary-triton that wrote another layout
        recorded = None
    if wanted != recorded:
        print(f"exporting {checkpoint} to {export_dir} ...", file=sys.stderr)
        export_checkpoint(
            checkpoint, export_dir, ExportOptions(profile="cpu", repository=repo), llm_dir=args.llm_dir, force=True
        )
    ports = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), exit_timeout_s=10)
    sample = Path(args.audio) if args.audio else DEMO_SAMPLE
    print("starting tritonserver ...", file=sys.stderr)
    with TritonServer(
        export_dir / "model_repository", ports, workdir=work, log_path=work / "tritonserver.log"
    ) as server:
        audio = load_audio(sample, 16000)
        text = transcribe(
            audio, ClientOptions(url=server.grpc_url, protocol="grpc"), max_new_tokens=args.max_new_tokens
        )
    print(f"{sample}\t{text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canary-triton", description="Serve NVIDIA Canary-Qwen-2.5B on Triton.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=fn)
        return p

    p = add("inspect", _cmd_inspect, "Check a checkpoint folder and print what it holds (dimensions, ids, LoRA scale).")
    p.add_argument("checkpoint")
    p.add_argument("--llm-dir", help=LLM_DIR_HELP)

    p = add(
        "export",
        _cmd_export,
        "Export a checkpoint: mel constants, ONNX encoder/projector, merged and base Qwen3 "
        "(+ TensorRT and TensorRT-LLM engines with --profile gpu), with a parity report against NeMo.",
    )
    p.add_argument("checkpoint")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--profile", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--llm-dir", help=LLM_DIR_HELP)
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
        "--max-batch", type=_positive_int, help="gpu: encoder engine max batch" + sized % EngineOptions.max_batch
    )
    p.add_argument(
        "--opt-batch", type=_positive_int, help="gpu: encoder engine optimal batch" + sized % EngineOptions.opt_batch
    )
    p.add_argument("--max-audio-seconds", type=_audio_seconds, default=C.MAX_AUDIO_SECONDS)
    p.add_argument("--opt-audio-seconds", type=_audio_seconds, default=10.0)
    p.add_argument(
        "--llm-max-batch",
        type=_positive_int,
        help="requests in flight in the llm (CPU engine; gpu: TensorRT-LLM max batch and table size)"
        + sized % RepositoryOptions.llm_max_batch,
    )
    p.add_argument(
        "--llm-base-max-batch",
        type=_positive_int,
        default=RepositoryOptions.llm_base_max_batch,
        help="cpu: requests in flight in llm_base (LLM mode, long text prompts)",
    )
    p.add_argument(
        "--triton-max-batch",
        type=_positive_int,
        default=None,
        help="max_batch_size of every Triton model (default: --max-batch; gpu: at most --max-batch)",
    )
    p.add_argument(
        "--instances",
        type=_positive_int,
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
        type=_positive_int,
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
        type=_probability,
        help="gpu: kv_cache_free_gpu_mem_fraction" + sized % RepositoryOptions.kv_cache_free_gpu_mem_fraction,
    )
    p.add_argument(
        "--max-num-tokens",
        type=_positive_int,
        help="gpu: TensorRT-LLM max_num_tokens (tokens per iteration)" + sized % LlmEngineOptions.max_num_tokens,
    )
    p.add_argument(
        "--max-inflight",
        type=_positive_int,
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
        type=_positive_float,
        default=RepositoryOptions.long_form_max_s,
        help="longest recording canary_qwen_long accepts",
    )
    p.add_argument(
        "--long-form-merge-seconds",
        type=_audio_seconds,
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
        type=_probability,
        default=_SEGMENT.vad_threshold,
        help="silero: speech probability threshold, in (0, 1)",
    )
    p.add_argument(
        "--vad-min-speech-ms",
        type=_milliseconds,
        default=1000 * _SEGMENT.min_speech_s,
        help="silero: shorter speech is dropped",
    )
    p.add_argument(
        "--vad-min-silence-ms",
        type=_milliseconds,
        default=1000 * _SEGMENT.min_pause_s,
        help="shorter silences do not split speech",
    )
    p.add_argument(
        "--vad-speech-pad-ms",
        type=_milliseconds,
        default=1000 * _SEGMENT.pad_s,
        help="audio kept before each speech region",
    )
    p.add_argument(
        "--silence-pad-ms",
        type=_milliseconds,
        default=1000 * _SEGMENT.silence_pad_s,
        help="long-form: zeros added at both ends of each segment sent to the model",
    )
    p.add_argument(
        "--vad-threads",
        type=_positive_int,
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
        type=_max_new_tokens,
        default=C.MAX_NEW_TOKENS_LIMIT,
        help="gpu: longest output the TensorRT-LLM engine is built for",
    )
    p.add_argument(
        "--weight-quant",
        type=_weight_quant,
        default="none",
        help="gpu: TensorRT-LLM weight-only quantisation: none, int8 or int4",
    )
    p.add_argument(
        "--mel-bucket-seconds",
        type=_audio_seconds,
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

    p = add(
        "serve",
        _cmd_serve,
        "Start tritonserver on a generated repository (or an export folder) and wait; "
        "Ctrl-C / SIGTERM stops it cleanly.",
    )
    p.add_argument("repository")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--log-verbose", type=int, default=0)
    p.add_argument(
        "--exit-timeout",
        type=int,
        default=30,
        help="seconds in-flight requests get to finish after SIGTERM (new ones are refused)",
    )
    p.add_argument(
        "--start-timeout",
        type=_positive_int,
        default=int(ServerOptions.start_timeout_s),
        help="seconds loading every model may take before serve gives up (default %(default)s)",
    )
    p.add_argument(
        "--no-stub-supervisor",
        action="store_true",
        help="do not reload a model whose Python stub died (then model control is off entirely)",
    )
    p.add_argument(
        "--no-watchdog",
        action="store_true",
        help="do not probe end to end nor recover a server that holds work but answers nothing",
    )
    p.add_argument(
        "--watchdog-interval",
        type=_positive_float,
        default=WatchdogOptions.interval_s,
        help="seconds between the watchdog's end-to-end probes (default %(default)s)",
    )
    p.add_argument(
        "--watchdog-deadline",
        type=_positive_float,
        default=WatchdogOptions.deadline_s,
        help="each probe request's deadline in seconds (default %(default)s); two missed in a row with no "
        "progress meanwhile mean wedged: the stubs are restarted, and the server stopped if that fails twice",
    )
    p.add_argument(
        "--allow-shared-memory",
        action="store_true",
        help="let clients register shared memory (off: restricted to the admin key, "
        "$CANARY_TRITON_ADMIN_KEY; model-repository, logging and trace always are)",
    )
    p.add_argument("--log-file", help="write tritonserver's log here (default: discard)")
    p.add_argument(
        "--triton-arg",
        action="append",
        help="pass one more option to tritonserver, e.g. --triton-arg=--model-control-mode=explicit",
    )

    p = add(
        "probe",
        _cmd_probe,
        "Answer one tiny real request end to end through the ASR ensemble and LLM mode, each within a deadline: "
        "exit 0 when the server can answer now (a load refusal counts), 1 when not (a readiness probe).",
    )
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton's gRPC address")
    p.add_argument("--deadline", type=_positive_float, default=WatchdogOptions.deadline_s, help="seconds per request")

    p = add("make-fixture", _cmd_make_fixture, "Write a tiny test checkpoint: tiny-random, or train tiny-trained.")
    p.add_argument("kind", choices=["tiny-random", "tiny-trained"])
    p.add_argument("out")
    p.add_argument("--seed", type=int, help="default: 1234 for tiny-random, the training script's for tiny-trained")
    p.add_argument("--heldout", help="tiny-trained: also write the held-out clips and manifest here")

    p = add(
        "reference",
        _cmd_reference,
        "Transcribe audio files in-process with NeMo (the reference the server must match).",
    )
    p.add_argument("audio", nargs="+")
    p.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    p.add_argument("--llm-dir", help=LLM_DIR_HELP)
    p.add_argument("--max-new-tokens", type=_max_new_tokens, default=C.DEFAULT_MAX_NEW_TOKENS)

    register_client(add, _max_new_tokens)

    register_gateway(add, _positive_int)

    p = add(
        "demo",
        _cmd_demo,
        "The main job on the embedded default: export the demo checkpoint, start Triton, "
        "transcribe a bundled sample through the served ensemble, print the transcript.",
    )
    p.add_argument("--checkpoint", help="a real checkpoint folder; default: the bundled tiny-trained model")
    p.add_argument("--llm-dir", help=LLM_DIR_HELP)
    p.add_argument("--audio", help="an audio file; default: a bundled sample")
    p.add_argument("--max-new-tokens", type=_max_new_tokens, default=C.DEFAULT_MAX_NEW_TOKENS)
    p.add_argument("--work-dir", default="~/.cache/canary-triton/demo", help="export, server files and log go here")
    return parser


def quiet_libraries() -> None:
    """Keep NeMo's and transformers' info logs and deprecation chatter off the user's stdout."""

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    logging.getLogger("nv_one_logger").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from nemo.utils import logging as nemo_logging

        nemo_logging.setLevel(logging.ERROR)
    except ImportError:  # NeMo is only needed by export/reference commands
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("inspect", "gateway", "probe") + CLIENT_COMMANDS:  # client commands never import NeMo
        quiet_libraries()
    try:
        return int(args.func(args))
    except CanaryTritonError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
