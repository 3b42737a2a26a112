"""The subcommands other than ``export`` and the client and gateway ones: ``inspect``, ``serve``,
``probe``, ``make-fixture``, ``reference``, ``demo``. Each is an ``add_<name>(add)`` that registers its
arguments and the ``_cmd_<name>(args) -> exit code`` it runs.

The export pipeline and the oracle import torch and NeMo (seconds): only the commands that run them
import them, so ``canary-triton --help`` and the client commands start at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.bundled import DEMO_CHECKPOINT, DEMO_SAMPLE
from canary_triton.checkpoint.reader import checkpoint_tokenizer, inspect_checkpoint, read_weight_shapes
from canary_triton.cli import arguments as A
from canary_triton.client.transcribe import ClientOptions, transcribe
from canary_triton.errors import CanaryTritonError, CheckpointError
from canary_triton.export.options import ExportOptions
from canary_triton.export.repository import RepositoryOptions
from canary_triton.fixtures.tiny import TINY_LONG_FORM_MERGE_S, make_tiny_random
from canary_triton.fixtures.train import train_fixture
from canary_triton.frontend.audio import load_audio
from canary_triton.serving.tritonserver import ServerOptions, TritonServer, free_port, run_forever
from canary_triton.serving.watchdog import WatchdogOptions, probe


def add_inspect(add: A.AddCommand) -> None:
    """Register ``inspect``."""
    p = add("inspect", _cmd_inspect, "Check a checkpoint folder and print what it holds (dimensions, ids, LoRA scale).")
    p.add_argument("checkpoint")
    p.add_argument("--llm-dir", help=A.LLM_DIR_HELP)


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


def add_serve(add: A.AddCommand) -> None:
    """Register ``serve``."""
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
        type=A.positive_int,
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
        type=A.positive_float,
        default=WatchdogOptions.interval_s,
        help="seconds between the watchdog's end-to-end probes (default %(default)s)",
    )
    p.add_argument(
        "--watchdog-deadline",
        type=A.positive_float,
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


def add_probe(add: A.AddCommand) -> None:
    """Register ``probe``."""
    p = add(
        "probe",
        _cmd_probe,
        "Answer one tiny real request end to end through the ASR ensemble and LLM mode, each within a deadline: "
        "exit 0 when the server can answer now (a load refusal counts), 1 when not (a readiness probe).",
    )
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton's gRPC address")
    p.add_argument("--deadline", type=A.positive_float, default=WatchdogOptions.deadline_s, help="seconds per request")


def _cmd_probe(args: argparse.Namespace) -> int:
    result = probe(args.url, args.deadline)
    print(f"{'serving' if result.ok else 'not serving'} ({result.seconds:.2f} s): {result.detail}")
    return 0 if result.ok else 1


def add_make_fixture(add: A.AddCommand) -> None:
    """Register ``make-fixture``."""
    p = add("make-fixture", _cmd_make_fixture, "Write a tiny test checkpoint: tiny-random, or train tiny-trained.")
    p.add_argument("kind", choices=["tiny-random", "tiny-trained"])
    p.add_argument("out")
    p.add_argument("--seed", type=int, help="default: 1234 for tiny-random, the training script's for tiny-trained")
    p.add_argument("--heldout", help="tiny-trained: also write the held-out clips and manifest here")


def _cmd_make_fixture(args: argparse.Namespace) -> int:
    if args.kind == "tiny-random":
        print(make_tiny_random(args.out, seed=1234 if args.seed is None else args.seed))
        return 0

    return train_fixture(Path(args.out), Path(args.heldout) if args.heldout else None, args.seed)


def add_reference(add: A.AddCommand) -> None:
    """Register ``reference``."""
    p = add(
        "reference",
        _cmd_reference,
        "Transcribe audio files in-process with NeMo (the reference the server must match).",
    )
    p.add_argument("audio", nargs="+")
    p.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    p.add_argument("--llm-dir", help=A.LLM_DIR_HELP)
    p.add_argument("--max-new-tokens", type=A.max_new_tokens, default=C.DEFAULT_MAX_NEW_TOKENS)


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


def add_demo(add: A.AddCommand) -> None:
    """Register ``demo``."""
    p = add(
        "demo",
        _cmd_demo,
        "The main job on the embedded default: export the demo checkpoint, start Triton, "
        "transcribe a bundled sample through the served ensemble, print the transcript.",
    )
    p.add_argument("--checkpoint", help="a real checkpoint folder; default: the bundled tiny-trained model")
    p.add_argument("--llm-dir", help=A.LLM_DIR_HELP)
    p.add_argument("--audio", help="an audio file; default: a bundled sample")
    p.add_argument("--max-new-tokens", type=A.max_new_tokens, default=C.DEFAULT_MAX_NEW_TOKENS)
    p.add_argument("--work-dir", default="~/.cache/canary-triton/demo", help="export, server files and log go here")


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
