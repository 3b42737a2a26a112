"""Throughput and latency of the served pipeline: a sweep over client concurrency x clip-length mix.

For every (mix, concurrency) point the mix's recordings are sent (repeated up to
``--min-requests``) with that many requests in flight, unary through ``canary_qwen`` and, unless
``--no-stream``, streamed through ``canary_qwen_stream``. Measured per point: RTFx (total audio
seconds / wall seconds of the point, pooled as the Open ASR Leaderboard does), requests/s,
transcript tokens/s (tokens of the transcripts by the checkpoint's tokenizer / wall seconds),
latency p50/p90/p99 per request, and for streaming the time to the first partial transcript.

Warm-up: one pass over every distinct recording at concurrency 1 before any measurement,
excluded from every figure; its transcripts are the reference (or NeMo's, below). A point fails
(exit 1) if any request errors or any transcript (unary, or the streamed pieces joined) differs
from the reference. With a checkpoint known (the server is started here, or ``--checkpoint``),
the reference transcripts come from NeMo's ``SALM.generate`` in-process unless ``--no-nemo-check``.

Mixes: ``short`` the manifest's clips as they are; ``medium`` / ``long`` consecutive clips joined
with 0.5 s silences into recordings of about 8 / 25 s (never over the 40 s limit); ``mixed`` all
three interleaved. Usage:

    python -m benchmarks.throughput [--url HOST:8001 [--export-dir OUT]] [--export-dir OUT]
        [--checkpoint DIR] [--manifest M.jsonl] [--limit N] [--mixes short,medium,long]
        [--concurrency 1,2,4,8] [--min-requests 45] [--no-stream] [--max-new-tokens N]
        [--out DIR] [--no-nemo-check]

Writes ``throughput.json``, ``throughput.md`` and ``latency_vs_throughput.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from benchmarks._common import (
    DEFAULT_CHECKPOINT,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRONG,
    HELDOUT_MANIFEST,
    PIPELINE_MODELS,
    STATISTICS_NOTE,
    Clip,
    Series,
    ServeOptions,
    TokenCounter,
    export_description,
    group_to_length,
    latency_summary,
    load_clips,
    machine_info,
    machine_line,
    markdown_table,
    model_statistics,
    plot_latency_throughput,
    served,
    served_settings,
    statistics_delta,
    statistics_markdown,
    write_outputs,
)
from benchmarks._nemo import load_oracle, transcribe
from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.client.api import CanaryClient
from canary_triton.client.audio_input import Audio
from canary_triton.client.options import ClientOptions

MIX_SECONDS = {"short": None, "medium": 8.0, "long": 25.0}
MIXES = (*MIX_SECONDS, "mixed")
JOIN_GAP_S = 0.5


@dataclass(frozen=True)
class SweepOptions:
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    mixes: tuple[str, ...] = ("short", "medium", "long")
    min_requests: int = 0  # 0: each mix's recordings once per point
    stream: bool = True
    max_new_tokens: int | None = None
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError(f"concurrency values must be >= 1, got {self.concurrency}")
        unknown = [m for m in self.mixes if m not in MIXES]
        if unknown or not self.mixes:
            raise ValueError(f"mixes must be among {', '.join(MIXES)}, got {', '.join(self.mixes) or 'none'}")


def build_mixes(clips: Sequence[Clip], names: Sequence[str]) -> dict[str, list[Clip]]:
    joined = {
        name: (list(clips) if sec is None else group_to_length(clips, sec, JOIN_GAP_S, f"{name}-"))
        for name, sec in MIX_SECONDS.items()
        if name in names or "mixed" in names
    }
    out = {name: joined[name] for name in names if name != "mixed"}
    if "mixed" in names:
        parts = [joined[n] for n in MIX_SECONDS]
        out["mixed"] = [p[i] for i in range(max(len(p) for p in parts)) for p in parts if i < len(p)]
    return out


def _requests(recordings: Sequence[Clip], minimum: int) -> list[Clip]:
    repeat = max(1, math.ceil(minimum / max(len(recordings), 1)))
    return list(recordings) * repeat


def run_unary(client, requests: Sequence[Clip], concurrency: int, max_new_tokens: int | None):
    audios = [Audio(c.samples, c.name) for c in requests]
    t0 = time.perf_counter()
    results = client.transcribe_many(audios, concurrency=concurrency, max_new_tokens=max_new_tokens)
    return results, time.perf_counter() - t0


@dataclass(frozen=True)
class StreamResult:
    name: str
    text: str | None
    error: str | None
    first_partial_s: float | None
    latency_s: float


def run_stream(client, requests: Sequence[Clip], concurrency: int, max_new_tokens: int | None):
    def one(c: Clip) -> StreamResult:
        t0 = time.perf_counter()
        first = None
        pieces: list[str] = []
        try:
            for piece in client.stream(c.samples, max_new_tokens=max_new_tokens):
                if first is None:
                    first = time.perf_counter() - t0
                pieces.append(piece)
        except Exception as e:  # noqa: BLE001  counted as an error of this request
            return StreamResult(c.name, None, str(e), first, time.perf_counter() - t0)
        return StreamResult(c.name, "".join(pieces), None, first, time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, requests))
    return results, time.perf_counter() - t0


def point_row(
    mode: str,
    mix: str,
    concurrency: int,
    requests: Sequence[Clip],
    texts: Sequence[str | None],
    errors: Sequence[str | None],
    latencies: Sequence[float],
    wall_s: float,
    reference: dict[str, str],
    tokens: TokenCounter | None,
    first_partial: Sequence[float | None] = (),
) -> dict[str, Any]:
    audio_s = float(sum(c.seconds for c in requests))
    wrong = [(c.name, t) for c, t, e in zip(requests, texts, errors) if e is None and t != reference.get(c.name)]
    failed = [f"{c.name}: {e}" for c, e in zip(requests, errors) if e is not None]
    n_tokens = sum(tokens.count(t) for t in texts if t) if tokens is not None else None
    row = {
        "mode": mode,
        "mix": mix,
        "concurrency": concurrency,
        "requests": len(requests),
        "audio_s": audio_s,
        "wall_s": wall_s,
        "rtfx": audio_s / wall_s,
        "requests_per_s": len(requests) / wall_s,
        "tokens": n_tokens,
        "tokens_per_s": n_tokens / wall_s if n_tokens is not None else None,
        **latency_summary(latencies),
        "errors": failed,
        "wrong_transcripts": sorted({n for n, _ in wrong}),
        "wrong_detail": [{"name": n, "expected": reference.get(n), "got": t} for n, t in wrong[:10]],
    }
    if mode == "stream":
        row.update(latency_summary([x for x in first_partial if x is not None], "first_partial"))
    return row


def nemo_reference(
    checkpoint: Path, recordings: Sequence[Clip], max_new_tokens: int | None, oracle=None
) -> dict[str, str]:
    oracle = oracle if oracle is not None else load_oracle(checkpoint)
    texts = transcribe(oracle, recordings, batch_size=8, max_new_tokens=max_new_tokens or C.DEFAULT_MAX_NEW_TOKENS)
    return {c.name: t for c, t in zip(recordings, texts)}


def sweep(
    url: str, mixes: dict[str, list[Clip]], opts: SweepOptions, tokens: TokenCounter | None, nemo: dict[str, str] | None
) -> dict[str, Any]:
    """Warm-up/reference pass, then every (mix, concurrency) point, unary and streamed."""
    copts = ClientOptions(url=url, timeout_s=opts.timeout_s)
    distinct = {c.name: c for recs in mixes.values() for c in recs}
    rows: list[dict[str, Any]] = []
    with CanaryClient(options=copts, concurrency=max(opts.concurrency)) as client:
        client.wait_ready()
        warm, _ = run_unary(client, list(distinct.values()), 1, opts.max_new_tokens)
        served_ref = {r.name: r.text for r in warm if r.ok}
        warm_errors = [f"{r.name}: {r.error}" for r in warm if not r.ok]
        reference = nemo if nemo is not None else served_ref
        warm_wrong = sorted(n for n, t in served_ref.items() if t != reference.get(n))
        before = model_statistics(url)
        for mix, recordings in mixes.items():
            requests = _requests(recordings, opts.min_requests)
            for c in opts.concurrency:
                results, wall = run_unary(client, requests, c, opts.max_new_tokens)
                rows.append(
                    point_row(
                        "unary",
                        mix,
                        c,
                        requests,
                        [r.text for r in results],
                        [r.error for r in results],
                        [r.latency_s for r in results if r.ok],
                        wall,
                        reference,
                        tokens,
                    )
                )
                print(_progress(rows[-1]), file=sys.stderr, flush=True)
                if opts.stream:
                    sres, wall = run_stream(client, requests, c, opts.max_new_tokens)
                    rows.append(
                        point_row(
                            "stream",
                            mix,
                            c,
                            requests,
                            [r.text for r in sres],
                            [r.error for r in sres],
                            [r.latency_s for r in sres if r.error is None],
                            wall,
                            reference,
                            tokens,
                            [r.first_partial_s for r in sres if r.error is None],
                        )
                    )
                    print(_progress(rows[-1]), file=sys.stderr, flush=True)
        after = model_statistics(url)
    return {
        "warmup": {"requests": len(warm), "errors": warm_errors, "wrong_transcripts": warm_wrong},
        "reference": "NeMo SALM.generate (in-process, batch 8)"
        if nemo is not None
        else "the served transcripts of the warm-up pass (concurrency 1)",
        "rows": rows,
        "server_statistics": statistics_delta(before, after),
    }


def _progress(r: dict[str, Any]) -> str:
    extra = f", first partial p50 {r['first_partial_p50_ms']:.0f} ms" if r.get("first_partial_p50_ms") else ""
    return (
        f"{r['mode']:>6} {r['mix']:>6} c={r['concurrency']:<3} RTFx {r['rtfx']:7.1f}  "
        f"{r['requests_per_s']:6.1f} req/s  "
        f"p50 {r['latency_p50_ms'] or 0:7.0f} ms  p90 {r['latency_p90_ms'] or 0:7.0f} ms{extra}"
        f"{'  ERRORS' if r['errors'] else ''}{'  WRONG' if r['wrong_transcripts'] else ''}"
    )


def render(payload: dict[str, Any]) -> str:
    head = (
        "Measured: served pipeline throughput and latency (client-side wall clock, gRPC, "
        f"{payload['server']['how']}).\nMachine: {machine_line(payload['machine'])}.\n"
        f"Settings: {payload['settings']}.\nWarm-up: {payload['result']['warmup']['requests']} requests (every "
        f"distinct recording once at concurrency 1), excluded. Reference transcripts: "
        f"{payload['result']['reference']}."
    )
    rows = payload["result"]["rows"]
    table = markdown_table(
        [
            "mode",
            "mix",
            "concurrency",
            "requests",
            "audio s",
            "RTFx",
            "req/s",
            "tokens/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "first partial p50 ms",
            "first partial p90 ms",
            "errors",
            "wrong",
        ],
        [
            [
                r["mode"],
                r["mix"],
                r["concurrency"],
                r["requests"],
                r["audio_s"],
                r["rtfx"],
                r["requests_per_s"],
                r["tokens_per_s"],
                r["latency_p50_ms"],
                r["latency_p90_ms"],
                r["latency_p99_ms"],
                r.get("first_partial_p50_ms"),
                r.get("first_partial_p90_ms"),
                len(r["errors"]),
                len(r["wrong_transcripts"]),
            ]
            for r in rows
        ],
    )
    stats = statistics_markdown(payload["result"]["server_statistics"])
    return f"{head}\n\n{table}\n\n{STATISTICS_NOTE}\n\n{stats}"


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="gRPC address of a running server (default: start one here)")
    ap.add_argument(
        "--export-dir",
        type=Path,
        help="a `canary-triton export` folder: served here, or the one --url serves (for its tokenizer and settings)",
    )
    ap.add_argument(
        "--checkpoint",
        type=Path,
        help="exported here when no export folder is given (default: the bundled tiny-trained); also NeMo's reference",
    )
    ap.add_argument("--llm-dir", type=Path, help="Qwen3 folder if not beside the checkpoint")
    ap.add_argument("--tokenizer-dir", type=Path, help="tokenizer for tokens/s when no export folder is known")
    ap.add_argument("--manifest", type=Path, default=HELDOUT_MANIFEST)
    ap.add_argument("--limit", type=int, help="use the first N clips of the manifest")
    ap.add_argument("--mixes", default="short,medium,long", help=f"comma-separated, among {', '.join(MIXES)}")
    ap.add_argument("--concurrency", type=parse_ints, default=(1, 2, 4, 8))
    ap.add_argument("--min-requests", type=int, default=0, help="repeat each mix's recordings up to this many requests")
    ap.add_argument("--no-stream", action="store_true", help="skip the streaming (time to first partial) runs")
    ap.add_argument("--max-new-tokens", type=int)
    ap.add_argument("--no-nemo-check", action="store_true", help="compare with the warm-up's served transcripts only")
    ap.add_argument("--skip-parity", action="store_true", help="export here without the parity report")
    ap.add_argument("--work-dir", type=Path, help="export, server files and log (default: a temporary folder)")
    ap.add_argument("--out", type=Path, help="write throughput.json, throughput.md and the plot here")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    return ap


def reference_checkpoint(checkpoint: Path | None, url: str | None, export_dir: Path | None) -> Path | None:
    """The checkpoint behind the served model when it can be known: given, recorded in the export
    folder's ``export.json`` (when that path exists here), or the default one exported here."""
    if checkpoint is not None:
        return checkpoint
    if export_dir is not None:
        recorded = ExportManifest.read(export_dir).checkpoint
        return Path(recorded) if recorded and Path(recorded).is_dir() else None
    return None if url else DEFAULT_CHECKPOINT


def main(argv: Sequence[str] | None = None, *, oracle=None) -> int:
    """``oracle``: an already loaded ``canary_triton.checkpoint.oracle.Oracle`` of the served checkpoint (tests)."""
    a = build_parser().parse_args(argv)
    try:
        opts = SweepOptions(
            concurrency=a.concurrency,
            mixes=tuple(m for m in a.mixes.split(",") if m),
            min_requests=a.min_requests,
            stream=not a.no_stream,
            max_new_tokens=a.max_new_tokens,
            timeout_s=a.timeout,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    machine = machine_info()
    clips = load_clips(a.manifest, a.limit)
    mixes = build_mixes(clips, opts.mixes)
    checkpoint = reference_checkpoint(a.checkpoint, a.url, a.export_dir)
    nemo = None
    if (checkpoint is not None or oracle is not None) and not a.no_nemo_check:
        distinct = list({c.name: c for recs in mixes.values() for c in recs}.values())
        print(
            f"NeMo reference transcripts for {len(distinct)} recordings from {checkpoint} ...",
            file=sys.stderr,
            flush=True,
        )
        nemo = nemo_reference(checkpoint, distinct, opts.max_new_tokens, oracle)
    serve = ServeOptions(
        url=a.url,
        export_dir=a.export_dir,
        checkpoint=checkpoint,
        llm_dir=a.llm_dir,
        parity=not a.skip_parity,
        work_dir=a.work_dir,
    )
    with served(serve) as target:
        tokens = TokenCounter.load(target.export_dir, a.tokenizer_dir)
        settings_served = served_settings(target.grpc_url, (C.ENSEMBLE_MODEL, *PIPELINE_MODELS))
        export = export_description(target.export_dir)
        result = sweep(target.grpc_url, mixes, opts, tokens, nemo)
    payload = {
        "benchmark": "throughput",
        "measured": "served pipeline: RTFx = audio s / wall s per point (pooled), requests/s, transcript tokens/s, "
        "latency per request, time to first partial (streaming)",
        "machine": machine,
        "server": {"how": target.how, "url": target.grpc_url, "export": export, "models": settings_served},
        "settings": {
            **asdict(opts),
            "manifest": str(a.manifest),
            "clips": len(clips),
            "mix_recordings": {k: len(v) for k, v in mixes.items()},
            "mix_audio_s": {k: round(sum(c.seconds for c in v), 2) for k, v in mixes.items()},
            "tokenizer": tokens.source if tokens else None,
        },
        "result": result,
    }
    md = render(payload)
    print(md)
    written = write_outputs(a.out, "throughput", payload, md)
    if a.out is not None:
        series = [
            Series(
                f"{mode} {mix}",
                tuple(r["rtfx"] for r in rs),
                tuple(r["latency_p50_ms"] or 0.0 for r in rs),
                tuple(f"c={r['concurrency']}" for r in rs),
            )
            for mode in ("unary", "stream")
            for mix in mixes
            if (rs := [r for r in result["rows"] if r["mode"] == mode and r["mix"] == mix])
        ]
        png = Path(a.out) / "latency_vs_throughput.png"
        lib = plot_latency_throughput(
            series,
            png,
            f"Latency p50 vs RTFx; {machine['cpu_count']} CPUs, {machine['platform']}",
            "RTFx (audio s / wall s)",
        )
        if lib:
            written.append(png)
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    bad = [r for r in result["rows"] if r["errors"] or r["wrong_transcripts"]]
    if result["warmup"]["errors"] or result["warmup"]["wrong_transcripts"] or bad:
        print(
            f"FAILED: {len(result['warmup']['errors'])} warm-up errors, "
            f"{len(result['warmup']['wrong_transcripts'])} warm-up transcripts differing from the reference, "
            f"{len(bad)} points with errors or wrong transcripts (see the JSON for names)",
            file=sys.stderr,
        )
        return EXIT_WRONG
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
