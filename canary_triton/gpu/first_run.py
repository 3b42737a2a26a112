"""The first GPU run as one command (``scripts/gpu_first_run.sh``), inside NVIDIA's
Triton+TensorRT-LLM image on one GPU: versions, ``export --profile gpu`` of the bundled
tiny-trained checkpoint (engines built), the load-time checks, tritonserver on the repository, the
held-out clips transcribed and compared with the CPU profile's transcripts, bad inputs, one
cancellation, and a table (stage, pass/fail, seconds, detail or the error); beside it, the
throughput model's predictions for the exported checkpoint next to what the run measured.

GPU-ONLY: nothing here has run on a GPU yet. Its logic (the stage table, dependencies, the
comparisons, the report) is unit-tested on CPU with stand-in stages (tests/test_gpu_first_run.py);
the stages themselves need the image. Usage::

    python3 -m canary_triton.gpu.first_run --work /engines/first-run [--release 26.06] [--report out.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from canary_triton import contract as C
from canary_triton.bundled import DEMO_CHECKPOINT, DEMO_HELDOUT
from canary_triton.checkpoint.tokenizer import load_tokenizer
from canary_triton.cli import export_options
from canary_triton.client import AsyncCanaryClient, CanaryClient
from canary_triton.client.transcribe import ClientOptions, transcribe
from canary_triton.evaluation.nemo_manifest import read_manifest
from canary_triton.export.gpu_checks import load_time_problems
from canary_triton.frontend.audio import load_audio
from canary_triton.gpu.stack import check_release, installed_versions
from canary_triton.gpu.throughput import DEFAULT_GPU, GPUS
from canary_triton.serving.tritonserver import ServerOptions, TritonServer

# torch, tritonclient and the modules built on torch (the export pipeline, the oracle) are
# imported by the stages that use them: the report logic runs (and is tested) without them.

#: Transcripts equal to the CPU profile's on at least this share of clips pass (the GPU runs bf16,
#: the CPU profile fp32: a rare near-tie in greedy decoding may flip a token).
MIN_EQUAL_SHARE = 0.9
#: Held-out clips in flight at once in the transcription stage (so the encoder can batch).
CONCURRENCY = 16
PREDICTED = "predicted (model, docs/gpu-throughput-model.md)"
MEASURED = "measured (this run)"


@dataclass
class Stage:
    name: str
    run: Callable[[dict[str, Any]], str]  # returns a one-line detail; raises on failure
    needs: tuple[str, ...] = ()  # stages that must have passed first


@dataclass
class StageResult:
    name: str
    status: str  # pass | FAIL | skipped
    seconds: float
    detail: str


@dataclass
class Report:
    results: list[StageResult] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)
    model_vs_run: str = ""  # format_model_vs_run's table

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.status == "pass" for r in self.results)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_stages(
    stages: Sequence[Stage], state: dict[str, Any] | None = None, clock: Callable[[], float] = time.monotonic
) -> list[StageResult]:
    """Run each stage in order; a failure is recorded (first line of the error), and the stages
    that need it are skipped, naming it. ``state`` carries values between stages."""
    state = {} if state is None else state
    status: dict[str, str] = {}
    out = []
    for stage in stages:
        missing = [n for n in stage.needs if status.get(n) != "pass"]
        if missing:
            status[stage.name] = "skipped"
            out.append(StageResult(stage.name, "skipped", 0.0, f"needs {', '.join(missing)}"))
            continue
        t0 = clock()
        try:
            detail = stage.run(state)
            status[stage.name] = "pass"
        except Exception as e:  # noqa: BLE001 - every failure becomes its row
            detail = _one_line(e)
            status[stage.name] = "FAIL"
        out.append(StageResult(stage.name, status[stage.name], clock() - t0, detail))
    return out


@dataclass(frozen=True)
class Comparison:
    total: int
    equal: int
    mismatches: tuple[tuple[int, str, str], ...]  # (clip index, gpu, cpu)

    @property
    def share(self) -> float:
        return self.equal / self.total if self.total else 0.0

    def ok(self, min_share: float = MIN_EQUAL_SHARE) -> bool:
        return self.total > 0 and self.share >= min_share


def compare_transcripts(gpu: Sequence[str], cpu: Sequence[str]) -> Comparison:
    if len(gpu) != len(cpu):
        raise ValueError(f"{len(gpu)} GPU transcripts for {len(cpu)} CPU ones")
    mism = tuple((i, g, c) for i, (g, c) in enumerate(zip(gpu, cpu)) if g != c)
    return Comparison(len(gpu), len(gpu) - len(mism), mism)


def transcript_stage_detail(cmp: Comparison) -> str:
    """The comparison as a row detail; raises when too few are equal."""
    detail = f"{cmp.equal}/{cmp.total} identical to the CPU profile"
    if cmp.mismatches:
        i, g, c = cmp.mismatches[0]
        detail += f"; first difference clip {i}: gpu {g!r} vs cpu {c!r}"
    if not cmp.ok():
        raise AssertionError(detail + f" (need >= {MIN_EQUAL_SHARE:.0%})")
    return detail


def format_report(report: Report) -> str:
    """A Markdown table of the stages, then the versions found, then the verdict."""
    lines = ["| stage | result | seconds | detail |", "|---|---|---|---|"]
    for r in report.results:
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.detail.replace('|', '/')} |")
    lines += ["", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v or 'not installed'} |" for k, v in report.versions.items()]
    if report.model_vs_run:
        lines += ["", report.model_vs_run.rstrip("\n")]
    failed = [r.name for r in report.results if r.status != "pass"]
    lines += ["", "PASSED" if report.passed else f"FAILED: {', '.join(failed)}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# The throughput model's predictions beside what the run measured
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """What the transcription stage measured: one pass over the held-out clips at ``concurrency``."""

    clips: int
    audio_s: float
    wall_s: float
    concurrency: int
    encoder_batches: dict[int, int]  # batch size -> encoder executions (Triton statistics, this pass)
    output_tokens: int  # tokens of the transcripts (the exported tokenizer)

    @property
    def rtfx(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def encoder_executions(self) -> int:
        return sum(self.encoder_batches.values())

    @property
    def mean_encoder_batch(self) -> float | None:
        n = self.encoder_executions
        return sum(b * c for b, c in self.encoder_batches.items()) / n if n else None

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s if self.wall_s > 0 else 0.0


def encoder_batches(stats: dict[str, Any]) -> dict[int, int]:
    """Executions per batch size from Triton's statistics of one model
    (``get_inference_statistics(model, as_json=True)``; counts arrive as strings)."""
    out: dict[int, int] = {}
    for model in stats.get("model_stats", []):
        for b in model.get("batch_stats", []):
            size, count = int(b["batch_size"]), int(b.get("compute_infer", {}).get("count", 0) or 0)
            out[size] = out.get(size, 0) + count
    return out


def batches_delta(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    """The executions of one pass: ``after`` minus ``before``, sizes with none left out."""
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0) > 0}


def gpu_model_for(device_name: str) -> str:
    """The throughput model's data sheet for a CUDA device name (H200, else H100)."""
    return next((k for k in GPUS if k != DEFAULT_GPU and k.upper() in device_name.upper()), DEFAULT_GPU)


def _f(x: float | None, fmt: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, fmt)


def format_model_vs_run(throughput: dict[str, Any] | None, measured: Measured | None) -> str:
    """The model's predictions for the exported checkpoint (export.json ``throughput_model``)
    beside the run's measurements, labelled as such, with the note on what they can show."""
    lines = [f"| figure | {PREDICTED} | {MEASURED} |", "|---|---|---|"]
    if throughput is None:
        return "\n".join(lines + ["| (all) | no predictions: the gpu export did not run | - |"]) + "\n"
    p, used = throughput["predictions"], throughput["used"]
    m = measured
    lines += [
        f"| RTFx | upper bound {_f(p['rtfx_upper_bound'])} at LLM max batch {used['llm_max_batch']} ({p['gpu']} "
        f"data sheet) | "
        + (
            "not measured"
            if m is None
            else f"{_f(m.rtfx, ',.1f')} ({m.clips} held-out clips, {m.audio_s:.1f} s of audio, "
            f"{m.concurrency} in flight)"
        )
        + " |",
        f"| encoder batch size | plans opt {used['encoder_opt_batch']} / max {used['encoder_max_batch']}, "
        f"{used['encoder_instances']} instances | "
        + (
            "not measured"
            if m is None
            else f"mean {_f(m.mean_encoder_batch, '.2f')}, largest "
            f"{max(m.encoder_batches, default=0)} over "
            f"{m.encoder_executions} executions (Triton statistics)"
        )
        + " |",
        f"| decode tokens/s | {_f(p['decode_tokens_per_s'])} at batch {used['llm_max_batch']} | "
        + (
            "not measured"
            if m is None
            else f"{_f(m.tokens_per_s, ',.1f')} (transcript tokens / wall time of the "
            "pass: the whole pipeline, not decode alone)"
        )
        + " |",
        f"| GPU share encoder / prefill / decode at the bound | {p['encoder_share']:.0%} / {p['prefill_share']:.0%} / "
        f"{p['decode_share']:.0%} | not measured |",
        f"| LLM requests in flight at {_f(p['target_rtfx'])} RTFx | "
        f"{'not reachable' if p['in_flight_at_target'] is None else _f(p['in_flight_at_target'])} | not measured |",
    ]
    shapes = throughput["shapes"]
    params = (shapes["encoder_params"] + shapes["llm_non_embedding_params"] + shapes["embedding_params"]) / 1e6
    lines += [
        "",
        f"Predictions: {throughput['note']}, for the exported checkpoint ({params:,.1f} M parameters). "
        "The bundled tiny checkpoint's measured figures are dominated by per-request overhead (Python "
        "models, gRPC, scheduling, kernel launches), not by the FLOPs and bytes the model counts: they "
        "neither confirm nor refute it. That takes benchmarks/throughput.py on the real checkpoint "
        "(docs/gpu-runbook.md).",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# The real stages (GPU image only)
# ------------------------------------------------------------------------------------------
#: (audio, max_new_tokens, text in the error) bad inputs the served GPU pipeline must refuse.
def bad_inputs(sample_rate: int) -> list[tuple[str, Any, int, str]]:
    return [
        ("41 s of audio", np.zeros((1, 41 * sample_rate), np.float32), 16, "the limit is 40 s"),
        ("NaN samples", np.array([[0.1, np.nan] * 800], np.float32), 16, "NaN or Inf"),
        ("max_new_tokens 0", np.zeros((1, sample_rate), np.float32), 0, f"between 1 and {C.MAX_NEW_TOKENS_LIMIT}"),
    ]


def real_stages(work: Path, release: str) -> list[Stage]:
    def versions(state):
        state["versions"] = installed_versions()
        return "TensorRT-LLM " + check_release(release, state["versions"].get("tensorrt_llm"))

    def export_gpu(state):
        import torch

        from canary_triton.export.pipeline import export_checkpoint

        t0 = time.monotonic()
        gpu = gpu_model_for(torch.cuda.get_device_name(0))
        # as `canary-triton export --profile gpu` does: the throughput model's defaults for this checkpoint
        opts = export_options(
            [str(DEMO_CHECKPOINT), "-o", str(work / "export"), "--profile", "gpu", "--gpu-model", gpu]
        )
        manifest = export_checkpoint(DEMO_CHECKPOINT, work / "export", opts, force=True)
        state["export"] = work / "export"
        state["throughput_model"] = manifest.throughput_model
        return (
            f"engines built in {time.monotonic() - t0:.0f} s: {manifest.files.encoder_plan}, trtllm/merged, "
            f"trtllm/base; defaults from the throughput model ({gpu}): {manifest.throughput_model['from_model']}"
        )

    def checks(state):
        problems = load_time_problems(state["export"])
        if problems:
            raise AssertionError(f"{len(problems)} load-time problem(s): {problems[0]}")
        return "tokenizer/guided parameters, absolute engine paths, kv reuse, batch and table sizes"

    def serve(state):
        server = TritonServer(
            state["export"] / "model_repository",
            ServerOptions(exit_timeout_s=10),
            workdir=work,
            log_path=work / "tritonserver.log",
        )
        server.__enter__()
        state["server"] = server
        return f"ready on {server.grpc_url} (log: {work / 'tritonserver.log'})"

    def transcribe_heldout(state):
        import tritonclient.grpc as grpcclient

        from canary_triton.checkpoint.oracle import Oracle

        rows = read_manifest(DEMO_HELDOUT / "manifest.jsonl")
        clips = [load_audio(r["audio_filepath"], 16000) for r in rows]
        url = state["server"].grpc_url
        stats = grpcclient.InferenceServerClient(url)

        def batches():
            return encoder_batches(stats.get_inference_statistics(C.ENCODER_MODEL, as_json=True))

        before = batches()
        t0 = time.monotonic()
        with CanaryClient(url, protocol="grpc") as client:
            results = client.transcribe_many(clips, concurrency=CONCURRENCY)
        wall = time.monotonic() - t0
        gpu = [r.text if r.ok else f"<error: {r.error}>" for r in results]
        tok = load_tokenizer(state["export"] / "llm_merged")
        state["measured"] = Measured(
            len(clips),
            sum(len(c) for c in clips) / 16000,
            wall,
            CONCURRENCY,
            batches_delta(before, batches()),
            sum(len(tok.encode(t)) for t in gpu),
        )
        cpu = Oracle.from_checkpoint(DEMO_CHECKPOINT).transcribe(clips)  # the CPU profile equals it (tests)
        return transcript_stage_detail(compare_transcripts(gpu, cpu))

    def refuse_bad_inputs(state):
        opts = ClientOptions(url=state["server"].grpc_url, protocol="grpc", retries=0)
        for name, audio, limit, message in bad_inputs(16000):
            try:
                transcribe(audio[0], opts, max_new_tokens=limit, long_form=False)
            except Exception as e:  # noqa: BLE001
                if message not in str(e):
                    raise AssertionError(f"{name}: refused, but not naming {message!r}: {_one_line(e)}") from None
                continue
            raise AssertionError(f"{name}: was accepted")
        return f"{len(bad_inputs(16000))} refused with their limits; the server kept serving"

    def cancel_one(state):
        async def go():
            async with AsyncCanaryClient(state["server"].grpc_url) as client:
                task = asyncio.create_task(
                    client.ask("Write a very long story about the sea.", max_new_tokens=C.MAX_NEW_TOKENS_LIMIT)
                )
                await asyncio.sleep(1.0)  # GPU-only smoke step: let generation start
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                return await client.ask("Say yes.", max_new_tokens=4)

        after = asyncio.run(go())
        return f"cancelled an LLM-mode request (stop request to {C.LLM_BASE_MODEL}); the next answered {after!r}"

    return [
        Stage("versions", versions),
        Stage("export --profile gpu (tiny-trained)", export_gpu, ("versions",)),
        Stage("load-time checks", checks, ("export --profile gpu (tiny-trained)",)),
        Stage("tritonserver ready", serve, ("load-time checks",)),
        Stage("held-out transcripts vs CPU profile", transcribe_heldout, ("tritonserver ready",)),
        Stage("bad inputs refused", refuse_bad_inputs, ("tritonserver ready",)),
        Stage("cancellation", cancel_one, ("tritonserver ready",)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m canary_triton.gpu.first_run", description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/engines/first-run"))
    p.add_argument("--release", default="", help="the image's TRITON_RELEASE (e.g. 26.06)")
    p.add_argument("--report", type=Path, help="also write the table here")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {}
    report = Report()
    try:
        report.results = run_stages(real_stages(args.work, args.release or "?"), state)
    finally:
        if "server" in state:
            state["server"].__exit__(None, None, None)
    report.versions = state.get("versions", {})
    report.model_vs_run = format_model_vs_run(state.get("throughput_model"), state.get("measured"))
    text = format_report(report)
    print(text)
    if args.report:
        args.report.write_text(text)
    (args.work / "first-run.json").write_text(
        json.dumps(
            {
                "passed": report.passed,
                "results": [r.__dict__ for r in report.results],
                "versions": report.versions,
                "throughput_model": state.get("throughput_model"),
                "measured": asdict(state["measured"]) if "measured" in state else None,
            },
            indent=2,
        )
    )
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
