"""The first GPU run as one command (``scripts/gpu_first_run.sh``), inside NVIDIA's
Triton+TensorRT-LLM image on one GPU: versions, ``export --profile gpu`` of the bundled
tiny-trained checkpoint (engines built), the load-time checks, tritonserver on the repository, the
held-out clips transcribed and compared with the CPU profile's transcripts, bad inputs, one
cancellation, and a table (stage, pass/fail, seconds, detail or the error).

GPU-ONLY: nothing here has run on a GPU yet. Its logic (the stage table, dependencies, the
comparisons, the report) is unit-tested on CPU with stand-in stages (tests/test_gpu_first_run.py);
the stages themselves need the image. Usage::

    python3 -m canary_triton.gpu_first_run --work /engines/first-run [--release 26.06] [--report out.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

#: Transcripts equal to the CPU profile's on at least this share of clips pass (the GPU runs bf16,
#: the CPU profile fp32: a rare near-tie in greedy decoding may flip a token).
MIN_EQUAL_SHARE = 0.9


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

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.status == "pass" for r in self.results)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_stages(stages: Sequence[Stage], state: dict[str, Any] | None = None,
               clock: Callable[[], float] = time.monotonic) -> list[StageResult]:
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
    failed = [r.name for r in report.results if r.status != "pass"]
    lines += ["", "PASSED" if report.passed else f"FAILED: {', '.join(failed)}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# The real stages (GPU image only)
# ------------------------------------------------------------------------------------------
#: (audio, max_new_tokens, text in the error) bad inputs the served GPU pipeline must refuse.
def bad_inputs(sample_rate: int) -> list[tuple[str, Any, int, str]]:
    import numpy as np

    from . import contract as C

    return [
        ("41 s of audio", np.zeros((1, 41 * sample_rate), np.float32), 16, "the limit is 40 s"),
        ("NaN samples", np.array([[0.1, np.nan] * 800], np.float32), 16, "NaN or Inf"),
        ("max_new_tokens 0", np.zeros((1, sample_rate), np.float32), 0, f"between 1 and {C.MAX_NEW_TOKENS_LIMIT}"),
    ]


def real_stages(work: Path, release: str) -> list[Stage]:
    from . import contract as C

    def versions(state):
        from .gpu_stack import check_release, installed_versions

        state["versions"] = installed_versions()
        return "TensorRT-LLM " + check_release(release, state["versions"].get("tensorrt_llm"))

    def export_gpu(state):
        from .cli import DEMO_CHECKPOINT
        from .export.pipeline import ExportOptions, export_checkpoint

        t0 = time.monotonic()
        manifest = export_checkpoint(DEMO_CHECKPOINT, work / "export", ExportOptions(profile="gpu"), force=True)
        state["export"] = work / "export"
        return f"engines built in {time.monotonic() - t0:.0f} s: {manifest['files']['encoder_plan']}, trtllm/merged, trtllm/base"

    def checks(state):
        from .export.gpu_checks import load_time_problems

        problems = load_time_problems(state["export"])
        if problems:
            raise AssertionError(f"{len(problems)} load-time problem(s): {problems[0]}")
        return "tokenizer/guided parameters, absolute engine paths, kv reuse, batch and table sizes"

    def serve(state):
        from .server import ServerOptions, TritonServer

        server = TritonServer(state["export"] / "model_repository", ServerOptions(exit_timeout_s=10),
                              workdir=work, log_path=work / "tritonserver.log")
        server.__enter__()
        state["server"] = server
        return f"ready on {server.grpc_url} (log: {work / 'tritonserver.log'})"

    def transcribe_heldout(state):
        from .audio import load_audio
        from .cli import DEMO_CHECKPOINT, DEMO_HELDOUT
        from .client.transcribe import ClientOptions, transcribe
        from .fixtures.speech import read_manifest
        from .oracle import Oracle

        rows = read_manifest(DEMO_HELDOUT / "manifest.jsonl")
        clips = [load_audio(r["audio_filepath"], 16000) for r in rows]
        opts = ClientOptions(url=state["server"].grpc_url, protocol="grpc")
        gpu = [transcribe(c, opts) for c in clips]
        cpu = Oracle.from_checkpoint(DEMO_CHECKPOINT).transcribe(clips)  # the CPU profile equals it (tests)
        return transcript_stage_detail(compare_transcripts(gpu, cpu))

    def refuse_bad_inputs(state):
        from .client.transcribe import ClientOptions, transcribe

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
        import asyncio

        from .client import AsyncCanaryClient

        async def go():
            async with AsyncCanaryClient(state["server"].grpc_url) as client:
                task = asyncio.create_task(client.ask("Write a very long story about the sea.",
                                                      max_new_tokens=C.MAX_NEW_TOKENS_LIMIT))
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
    p = argparse.ArgumentParser(prog="python3 -m canary_triton.gpu_first_run", description=__doc__.split("\n")[0])
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
    text = format_report(report)
    print(text)
    if args.report:
        args.report.write_text(text)
    (args.work / "first-run.json").write_text(json.dumps(
        {"passed": report.passed, "results": [r.__dict__ for r in report.results], "versions": report.versions}, indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
