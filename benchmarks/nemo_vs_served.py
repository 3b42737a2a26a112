"""NeMo in-process vs the served pipeline, side by side: same checkpoint, same clips, same machine.

NeMo: the project's oracle (``SALM.from_pretrained``, eval, fp32 on CPU) runs ``SALM.generate``
over all clips sorted longest first in fixed batches, as the Open ASR Leaderboard does, for each
of ``--batch-sizes`` (one warm-up batch excluded each time); the best RTFx counts. Served: the
checkpoint exported with the CPU profile and served by tritonserver here (or ``--url`` with its
``--export-dir``), the same clips in the same order sent with ``transcribe_many`` at each of
``--concurrency`` (``--warmup`` requests excluded); the best RTFx counts. RTFx = total audio
seconds / wall seconds, pooled. Printed: both tables, the ratio served/NeMo of the best
throughputs, and per-model Triton statistics (queue vs compute) of the best served run;
``--profile`` adds a cProfile of NeMo's best run. Exit 1 if any served transcript differs from
NeMo's (greedy, cut to the served duration-based token limit where the server applies one) or
any request errors.

Checkpoints: ``--size trained`` the bundled tiny-trained (default, meaningful transcripts);
``tiny|small|full`` random weights built here with NeMo (``full`` = Canary-Qwen-2.5B's shapes:
slow and ~10 GB of RAM per copy on CPU), whose EOS row is zeroed so every request generates
exactly ``--max-new-tokens`` tokens; or ``--checkpoint DIR`` (any SALM checkpoint). Usage:

    python -m benchmarks.nemo_vs_served [--size trained|tiny|small|full | --checkpoint DIR]
        [--manifest M.jsonl] [--limit N] [--batch-sizes 1,4,16,45] [--concurrency 2,4,8]
        [--max-new-tokens N] [--url HOST:8001 --export-dir OUT] [--profile] [--out DIR]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks._common import (
    DEFAULT_CHECKPOINT,
    EXIT_OK,
    EXIT_WRONG,
    HELDOUT_MANIFEST,
    PIPELINE_MODELS,
    SAMPLE_RATE,
    STATISTICS_NOTE,
    Clip,
    ServeOptions,
    TokenCounter,
    export_description,
    fmt,
    group_cpu_seconds,
    group_memory,
    group_to_length,
    latency_summary,
    leading_agreement_summary,
    llm_step_counters,
    llm_steps_delta,
    load_clips,
    machine_info,
    machine_line,
    markdown_table,
    model_statistics,
    parse_repository_options,
    self_peak_rss_mib,
    served,
    served_settings,
    statistics_delta,
    statistics_markdown,
    write_outputs,
)
from benchmarks._nemo import (
    SIZES,
    checkpoint_parameters,
    load_oracle,
    longest_first,
    make_random_checkpoint,
    output_limit,
    profile_top,
    timed_run,
)
from benchmarks.throughput import parse_ints
from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.client.api import CanaryClient
from canary_triton.client.audio_input import Audio
from canary_triton.client.options import ClientOptions

# torch is imported where the NeMo side runs (the served side needs none).

GOAL_RATIO = 2.0  # the served CPU pipeline's target: at least 2x NeMo's in-process throughput


def nemo_side(
    oracle,
    clips: Sequence[Clip],
    batch_sizes: Sequence[int],
    max_new_tokens: int,
    tokens: TokenCounter | None,
    profile_dir: Path | None,
    repeats: int = 1,
) -> dict[str, Any]:
    runs = []
    for bs in batch_sizes:
        passes = [timed_run(oracle, clips, min(bs, len(clips)), max_new_tokens, warmup=k == 0) for k in range(repeats)]
        run = min(passes, key=lambda r: r.wall_s)
        runs.append(run)
        print(
            f"NeMo batch {bs:>3}: RTFx {run.rtfx:7.1f}  ({run.wall_s:.2f} s for {run.audio_s:.1f} s of audio; "
            f"passes {', '.join(f'{r.wall_s:.2f}' for r in passes)} s)",
            file=sys.stderr,
            flush=True,
        )
    best = max(runs, key=lambda r: r.rtfx)
    rows = []
    for r in runs:
        row = r.row()
        n_tok = sum(tokens.count(t) for t in r.texts) if tokens else None
        row["tokens_per_s"] = n_tok / r.wall_s if n_tok is not None else None
        row["differs_from_best"] = [clips[i].name for i, (a, b) in enumerate(zip(r.texts, best.texts)) if a != b]
        rows.append(row)
    out: dict[str, Any] = {
        "rows": rows,
        "best_batch_size": best.batch_size,
        "best_rtfx": best.rtfx,
        "texts": list(best.texts),
    }
    if profile_dir is not None:
        path = Path(profile_dir) / "nemo_best.prof"
        prof_run = timed_run(oracle, clips, best.batch_size, max_new_tokens, warmup=False, profile_path=path)
        out["profile"] = {
            "file": str(path),
            "batch_size": best.batch_size,
            "wall_s_under_cprofile": prof_run.wall_s,
            "top_own_time": profile_top(path),
        }
    return out


def make_latency_clip(clips: Sequence[Clip], seconds: float) -> Clip:
    """One clip of exactly ``seconds``: held-out clips joined with 0.3 s pauses, then cut."""
    if not 0 < seconds <= C.MAX_AUDIO_SECONDS:
        raise ValueError(f"--latency-seconds must be in (0, {C.MAX_AUDIO_SECONDS:g}], got {seconds:g}")
    joined = group_to_length(clips, seconds, 0.3, "latency")[0]
    n = int(round(seconds * SAMPLE_RATE))
    if len(joined.samples) < n:
        raise ValueError(f"the manifest's clips hold {joined.seconds:.1f} s, fewer than --latency-seconds {seconds:g}")
    return Clip(f"latency-{seconds:g}s", joined.samples[:n].copy())


def nemo_latency(oracle, clip: Clip, max_new_tokens: int, repeats: int) -> dict[str, Any]:
    """NeMo batch 1 on one clip: wall seconds of each pass (a warm-up pass excluded)."""
    runs = [timed_run(oracle, [clip], 1, max_new_tokens, warmup=k == 0) for k in range(max(repeats, 1))]
    best = min(runs, key=lambda r: r.wall_s)
    print(f"NeMo batch 1, one {clip.seconds:.1f} s clip: {best.wall_s:.2f} s", file=sys.stderr, flush=True)
    return {"clip_s": clip.seconds, "best_s": best.wall_s, "passes_s": [r.wall_s for r in runs], "text": best.texts[0]}


def served_latency(url: str, clip: Clip, max_new_tokens: int, repeats: int, timeout_s: float) -> dict[str, Any]:
    """The served pipeline at concurrency 1 on one clip: end-to-end seconds per request (one
    warm-up request excluded)."""
    audio = Audio(clip.samples, clip.name)
    times, texts, errors = [], [], []
    with CanaryClient(options=ClientOptions(url=url, timeout_s=timeout_s), concurrency=1) as client:
        for k in range(max(repeats, 1) + 1):
            r = client.transcribe_many([audio], concurrency=1, max_new_tokens=max_new_tokens)[0]
            if not r.ok:
                errors.append(f"{r.name}: {r.error}")
            elif k:
                times.append(r.latency_s)
                texts.append(r.text)
    best = min(times) if times else None
    print(f"served c=1, one {clip.seconds:.1f} s clip: {fmt(best, 2)} s", file=sys.stderr, flush=True)
    return {"clip_s": clip.seconds, "best_s": best, "passes_s": times, "texts": texts, "errors": errors}


def llm_mode_requests(url: str, n: int, timeout_s: float) -> dict[str, Any]:
    """``n`` LLM-mode requests (text only, the base model), so the server's memory is read after
    both modes have run."""
    errors, seconds = [], []
    with CanaryClient(options=ClientOptions(url=url, timeout_s=timeout_s), concurrency=1) as client:
        for k in range(n):
            t0 = time.perf_counter()
            try:
                client.ask(f"Summarize in one sentence: request {k} of the benchmark.", max_new_tokens=8)
                seconds.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001  (reported, counted as an error)
                errors.append(str(e))
    return {"requests": n, "seconds": seconds, "errors": errors}


def combine_nemo(runs: dict[str, dict[str, Any]], reference_dtype: str) -> dict[str, Any]:
    """NeMo's runs in each dtype as one table: the best RTFx over all of them counts; the
    reference transcripts are those of ``reference_dtype`` (the served precision) when it ran."""
    rows = [{**r, "dtype": dt} for dt, run in runs.items() for r in run["rows"]]
    best_dt = max(runs, key=lambda dt: runs[dt]["best_rtfx"])
    ref_dt = reference_dtype if reference_dtype in runs else next(iter(runs))
    out = {
        "rows": rows,
        "best_dtype": best_dt,
        "best_batch_size": runs[best_dt]["best_batch_size"],
        "best_rtfx": runs[best_dt]["best_rtfx"],
        "reference_dtype": ref_dt,
        "texts": runs[ref_dt]["texts"],
    }
    for run in runs.values():
        if "profile" in run:
            out["profile"] = run["profile"]
    lat = {dt: run["latency"] for dt, run in runs.items() if "latency" in run}
    if lat:
        best_lat = min(lat, key=lambda dt: lat[dt]["best_s"])
        out["latency"] = {
            "by_dtype": lat,
            "best_dtype": best_lat,
            "best_s": lat[best_lat]["best_s"],
            "clip_s": lat[best_lat]["clip_s"],
        }
    return out


def _served_pass(
    client,
    url: str,
    clips: Sequence[Clip],
    order: Sequence[int],
    audios,
    concurrency: int,
    max_new_tokens: int,
    reference: Sequence[str],
    tokens: TokenCounter | None,
    server_pgid: int | None,
    metrics_url: str | None = None,
) -> dict[str, Any]:
    before = model_statistics(url)
    steps0 = llm_step_counters(metrics_url)
    s0 = group_cpu_seconds(server_pgid)
    t0, c0 = time.perf_counter(), time.process_time()
    results = client.transcribe_many(audios, concurrency=concurrency, max_new_tokens=max_new_tokens)
    wall, client_cpu = time.perf_counter() - t0, time.process_time() - c0
    s1 = group_cpu_seconds(server_pgid)
    after = model_statistics(url)
    steps1 = llm_step_counters(metrics_url)
    texts: list[str | None] = [None] * len(clips)
    for pos, i in enumerate(order):
        texts[i] = results[pos].text
    audio_s = float(sum(c.seconds for c in clips))
    n_tok = sum(tokens.count(t) for t in texts if t) if tokens else None
    wrong = [
        {"name": clips[i].name, "nemo": reference[i], "served": texts[i]}
        for i in range(len(clips))
        if texts[i] is not None and texts[i] != reference[i]
    ]
    return {
        "concurrency": concurrency,
        "requests": len(clips),
        "audio_s": audio_s,
        "wall_s": wall,
        "rtfx": audio_s / wall,
        "requests_per_s": len(clips) / wall,
        "tokens_per_s": n_tok / wall if n_tok is not None else None,
        **latency_summary([r.latency_s for r in results if r.ok]),
        "client_cpu_s": client_cpu,
        "server_cpu_s": s1 - s0 if s0 is not None and s1 is not None else None,
        "errors": [f"{r.name}: {r.error}" for r in results if not r.ok],
        "wrong": wrong,
        "leading_tokens": leading_agreement_summary(tokens, reference, texts) if tokens else None,
        "server_statistics": statistics_delta(before, after),
        "llm_steps": llm_steps_delta(steps0, steps1),
        "texts": texts,
    }


def served_side(
    url: str,
    clips: Sequence[Clip],
    concurrency: Sequence[int],
    max_new_tokens: int,
    warmup: int,
    reference: Sequence[str],
    tokens: TokenCounter | None,
    timeout_s: float,
    repeats: int = 1,
    server_pgid: int | None = None,
    metrics_url: str | None = None,
) -> dict[str, Any]:
    order = longest_first(clips)
    audios = [Audio(clips[i].samples, clips[i].name) for i in order]
    rows = []
    with CanaryClient(options=ClientOptions(url=url, timeout_s=timeout_s), concurrency=max(concurrency)) as client:
        client.wait_ready()
        warm = client.transcribe_many(audios[:warmup], concurrency=max(concurrency), max_new_tokens=max_new_tokens)
        warm_errors = [f"{r.name}: {r.error}" for r in warm if not r.ok]
        for c in concurrency:
            passes = [
                _served_pass(
                    client, url, clips, order, audios, c, max_new_tokens, reference, tokens, server_pgid, metrics_url
                )
                for _ in range(repeats)
            ]
            row = max(passes, key=lambda r: r["rtfx"])
            row["pass_wall_s"] = [r["wall_s"] for r in passes]
            row["errors"] = [e for r in passes for e in r["errors"]]
            row["wrong"] = [w for r in passes for w in r["wrong"]]
            rows.append(row)
            print(
                f"served c={c:>3}: RTFx {row['rtfx']:7.1f}  p50 {fmt(row['latency_p50_ms'], 0)} ms  "
                f"{len(row['errors'])} errors, {len(row['wrong'])} differ from NeMo; passes "
                f"{', '.join(f'{w:.2f}' for w in row['pass_wall_s'])} s",
                file=sys.stderr,
                flush=True,
            )
    best = max(rows, key=lambda r: r["rtfx"])
    return {
        "warmup": {"requests": min(warmup, len(clips)), "errors": warm_errors},
        "rows": rows,
        "best_concurrency": best["concurrency"],
        "best_rtfx": best["rtfx"],
    }


def render(p: dict[str, Any]) -> str:
    n, s = p["nemo"], p["served"]
    head = (
        f"Measured: NeMo SALM.generate in-process vs the served pipeline on the same clips; checkpoint "
        f"{p['checkpoint']['description']}; {p['clips']['count']} clips, {p['clips']['audio_s']:.1f} s of audio "
        f"(manifest {p['clips']['manifest']}); max_new_tokens {p['max_new_tokens']}.\n"
        f"Machine: {machine_line(p['machine'])}. NeMo: {p['nemo_settings']}. Served: {p['server']['how']}.\n"
        f"Warm-up excluded: one batch per NeMo batch size; {s['warmup']['requests']} served requests. Each "
        f"setting timed {p['repeats']} time(s), the fastest pass counts."
    )
    nemo_t = markdown_table(
        [
            "NeMo dtype",
            "batch size",
            "RTFx",
            "clips/s",
            "tokens/s",
            "wall s",
            "CPU s (process)",
            "differs from best batch",
        ],
        [
            [
                r.get("dtype", "float32"),
                r["batch_size"],
                r["rtfx"],
                r["clips_per_s"],
                r["tokens_per_s"],
                r["wall_s"],
                r["cpu_s"],
                len(r["differs_from_best"]),
            ]
            for r in n["rows"]
        ],
    )
    served_t = markdown_table(
        [
            "served concurrency",
            "RTFx",
            "req/s",
            "tokens/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "CPU s server",
            "CPU s client",
            "errors",
            "differ from NeMo",
        ],
        [
            [
                r["concurrency"],
                r["rtfx"],
                r["requests_per_s"],
                r["tokens_per_s"],
                r["latency_p50_ms"],
                r["latency_p90_ms"],
                r["latency_p99_ms"],
                r["server_cpu_s"],
                r["client_cpu_s"],
                len(r["errors"]),
                len(r["wrong"]),
            ]
            for r in s["rows"]
        ],
    )
    best = next(r for r in s["rows"] if r["concurrency"] == s["best_concurrency"])
    ratio = p["ratio"]
    lines = [
        head,
        "",
        nemo_t,
        "",
        served_t,
        "",
        f"**Served / NeMo throughput: {ratio:.2f}x** (served best RTFx {s['best_rtfx']:.1f} at concurrency "
        f"{s['best_concurrency']}, LLM in {p.get('served_precision', 'fp32')}, encoder in "
        f"{p.get('served_encoder_precision', 'fp32')}, vs NeMo best RTFx "
        f"{n['best_rtfx']:.1f} at batch {n['best_batch_size']} in {n.get('best_dtype', 'float32')}); goal "
        f">= {GOAL_RATIO:.0f}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'}. Transcripts identical to NeMo "
        f"{n.get('reference_dtype', 'float32')}: {p['identical']}.{_leading_line(best.get('leading_tokens'))}",
        "",
        *_latency_lines(n, s),
        *_memory_lines(p.get("memory")),
        f"Served best run, per model. {STATISTICS_NOTE}",
        "",
        statistics_markdown(best["server_statistics"]),
        *_llm_steps_lines(best.get("llm_steps") or []),
    ]
    if "profile" in n:
        prof = n["profile"]
        lines += [
            "",
            f"NeMo cProfile (batch {prof['batch_size']}, {prof['wall_s_under_cprofile']:.2f} s under the "
            f"profiler; {prof['file']}), functions with the most own time:",
            "",
            markdown_table(
                ["function", "calls", "own s", "cumulative s"],
                [
                    [r["function"], r["calls"], f"{r['own_s']:.3f}", f"{r['cumulative_s']:.3f}"]
                    for r in prof["top_own_time"]
                ],
            ),
        ]
    return "\n".join(lines)


def _leading_line(lead: dict[str, Any] | None) -> str:
    if not lead or not lead["of"]:
        return ""
    return (
        f" Leading tokens equal to NeMo's (transcripts tokenized again), best run: {lead['agree']} of "
        f"{lead['of']} ({100 * lead['agree'] / lead['of']:.1f} %), per clip median "
        f"{100 * lead['median_fraction']:.1f} %; {lead['clips_all_equal']} of {lead['clips']} clips identical."
    )


def _llm_steps_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The CPU llm models' in-flight batch over the best run (Triton's canary_llm_* counters):
    a decode step reads every weight once, so its mean rows is the batch's efficiency."""
    if not rows:
        return []
    return [
        "",
        "In-flight batch of the CPU LLM engines over that run (canary_llm_steps_total and friends): "
        "a decode step costs about the same from 1 to 16 rows on CPU, so mean rows per step is its efficiency.",
        "",
        markdown_table(
            ["model", "decode steps", "mean rows per step", "prefills", "mean requests per prefill", "positions"],
            [
                [
                    r["model"],
                    r["decode_steps"],
                    fmt(r["decode_mean_rows"], 1),
                    r["prefills"],
                    fmt(r["prefill_mean_rows"], 1),
                    r["prefill_positions"],
                ]
                for r in rows
            ],
        ),
    ]


def _latency_lines(n: dict[str, Any], s: dict[str, Any]) -> list[str]:
    ln, ls = n.get("latency"), s.get("latency")
    if not ln or not ls or ls.get("best_s") is None:
        return []
    ratio = ls["best_s"] / ln["best_s"]
    per_dtype = ", ".join(f"{dt} {v['best_s']:.2f} s" for dt, v in ln["by_dtype"].items())
    return [
        f"**Latency, one {ln['clip_s']:.1f} s clip**: served at concurrency 1 {ls['best_s']:.2f} s vs NeMo batch 1 "
        f"{ln['best_s']:.2f} s ({per_dtype}; best of {len(ls['passes_s'])} each, a warm-up excluded): "
        f"served/NeMo time {ratio:.2f}; goal no slower than NeMo: {'met' if ratio <= 1.0 else 'NOT met'}.",
        "",
    ]


def _memory_lines(memory: dict[str, Any] | None) -> list[str]:
    if not memory:
        return []
    lines = [
        f"Peak RSS of this process after NeMo's runs (NeMo in-process): {memory['nemo_process_peak_rss_mib']:.0f} MiB."
    ]
    if memory.get("llm_mode_requests"):
        lines[0] += (
            f" The server's memory was read after the served runs and {memory['llm_mode_requests']} LLM-mode requests."
        )
    srv = memory.get("server")
    if srv:
        lines += [
            f"Server processes after the served runs (MiB; PSS counts shared pages once: total PSS "
            f"{srv['total_pss_mib']:.0f} MiB):",
            "",
            markdown_table(
                ["process", "peak RSS", "RSS", "PSS"],
                [
                    [r["process"], f"{r['peak_rss_mib']:.0f}", f"{r['rss_mib']:.0f}", f"{r['pss_mib']:.0f}"]
                    for r in srv["processes"]
                ],
            ),
        ]
    return lines + [""]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--size",
        choices=["trained", *SIZES],
        default="trained",
        help="trained: the bundled tiny-trained; others: random weights of that size, built here",
    )
    ap.add_argument("--checkpoint", type=Path, help="any SALM checkpoint folder (overrides --size)")
    ap.add_argument("--llm-dir", type=Path, help="Qwen3 folder if not beside the checkpoint")
    ap.add_argument("--seed", type=int, default=1234, help="random-weight sizes: the seed")
    ap.add_argument("--manifest", type=Path, default=HELDOUT_MANIFEST)
    ap.add_argument("--limit", type=int, help="use the first N clips of the manifest")
    ap.add_argument("--batch-sizes", type=parse_ints, default=(1, 4, 16, 45))
    ap.add_argument("--concurrency", type=parse_ints, default=(2, 4, 8))
    ap.add_argument(
        "--max-new-tokens",
        type=int,
        help="default: 128 for real/trained checkpoints; for random "
        "weights the served token limit of the shortest clip",
    )
    ap.add_argument("--warmup", type=int, default=4, help="served warm-up requests (excluded)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="timed passes per NeMo batch size and per served concurrency; the fastest counts (both "
        "sides alike: the least disturbed by other load on a shared machine)",
    )
    ap.add_argument("--url", help="gRPC address of a running server on the same checkpoint (needs --export-dir)")
    ap.add_argument("--export-dir", type=Path, help="the export folder served by --url, or one to serve here")
    ap.add_argument(
        "--metrics-url",
        help="Prometheus endpoint of the server at --url (http://host:8002/metrics): the LLM engines' step "
        "counters (known without it for a server started here)",
    )
    ap.add_argument("--skip-parity", action="store_true", help="export here without the parity report")
    ap.add_argument(
        "--repository-option",
        action="append",
        metavar="KEY=VALUE",
        help="export made here: a RepositoryOptions field, e.g. threads_per_instance=2 (repeatable)",
    )
    ap.add_argument("--nemo-device", default="cpu", help="cpu, or cuda on a GPU machine")
    ap.add_argument(
        "--nemo-dtype",
        type=_dtypes,
        default=("float32", "bfloat16"),
        help="NeMo's dtypes, comma-separated (each timed; the best counts)",
    )
    ap.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="served export made here: the CPU profile's LLM precision",
    )
    ap.add_argument(
        "--max-mismatches",
        type=int,
        default=0,
        help="transcripts allowed to differ before exit 1 (0 on CPU fp32; see README for GPU bf16)",
    )
    ap.add_argument(
        "--latency-seconds",
        type=float,
        default=5.0,
        help="latency: one clip of this length (held-out clips joined, then cut) at NeMo batch 1 and "
        "served concurrency 1, best of --repeats (0: skip)",
    )
    ap.add_argument(
        "--llm-mode-requests",
        type=int,
        default=2,
        help="LLM-mode requests sent before the server's memory is read, so both modes have run",
    )
    ap.add_argument("--profile", action="store_true", help="also run NeMo's best batch size under cProfile")
    ap.add_argument("--work-dir", type=Path, help="checkpoint, export, server files (default: a temporary folder)")
    ap.add_argument("--out", type=Path, help="write nemo_vs_served.json / .md (and the profile) here")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per served request")
    return ap


def main(argv: Sequence[str] | None = None, *, oracle=None) -> int:
    """``oracle``: an already loaded ``canary_triton.checkpoint.oracle.Oracle`` of the same checkpoint (tests)."""
    import torch

    a = build_parser().parse_args(argv)
    if a.url and not a.export_dir:
        print(
            "error: --url needs --export-dir (the export the server runs: its tokenizer and checkpoint)",
            file=sys.stderr,
        )
        return 2
    try:
        repo = parse_repository_options(a.repository_option)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="canary-nemo-vs-served-") as tmp:
        work = Path(a.work_dir) if a.work_dir else Path(tmp)
        if a.checkpoint:
            ckpt, desc = a.checkpoint, f"{a.checkpoint}"
        elif a.size == "trained":
            ckpt, desc = DEFAULT_CHECKPOINT, f"tiny-trained ({DEFAULT_CHECKPOINT})"
        else:
            t0 = time.perf_counter()
            ckpt = make_random_checkpoint(a.size, work / f"random-{a.size}", seed=a.seed)
            desc = f"random weights, size {a.size} (built here in {time.perf_counter() - t0:.0f} s, seed {a.seed})"
        params = checkpoint_parameters(ckpt)
        desc += (
            f"; {params['total'] / 1e6:.1f} M parameters (encoder {params['encoder'] / 1e6:.1f} M, "
            f"LLM layers {params['llm'] / 1e6:.1f} M, embeddings and projection {params['other'] / 1e6:.1f} M)"
        )
        manifest_clips = load_clips(a.manifest)  # decoded once: the timed clips and the latency clip's source
        clips = manifest_clips[: a.limit] if a.limit is not None else manifest_clips
        random_size = a.checkpoint is None and a.size != "trained"
        max_new = a.max_new_tokens or (
            min(output_limit(c, C.DEFAULT_MAX_NEW_TOKENS) for c in clips) if random_size else C.DEFAULT_MAX_NEW_TOKENS
        )
        latency_clip = make_latency_clip(manifest_clips, a.latency_seconds) if a.latency_seconds > 0 else None
        own_oracle = oracle is None

        nemo_runs: dict[str, dict[str, Any]] = {}
        for k, dtype in enumerate(a.nemo_dtype):  # float32 first: the in-place cast to bf16 is one-way
            if own_oracle and k == 0:
                oracle = load_oracle(ckpt, a.llm_dir, a.nemo_device, dtype)
            elif own_oracle:
                oracle.model.to(dtype=getattr(torch, dtype))
            run_oracle = (
                oracle if own_oracle or dtype == "float32" else load_oracle(ckpt, a.llm_dir, a.nemo_device, dtype)
            )
            print(f"NeMo in {dtype}:", file=sys.stderr, flush=True)
            tokens_nemo = TokenCounter(_NemoTokenizer(run_oracle), "NeMo's tokenizer")
            nemo_runs[dtype] = nemo_side(
                run_oracle,
                clips,
                a.batch_sizes,
                max_new,
                tokens_nemo,
                (a.out or work) if a.profile and k == 0 else None,
                a.repeats,
            )
            if latency_clip is not None:
                nemo_runs[dtype]["latency"] = nemo_latency(run_oracle, latency_clip, max_new, a.repeats)
        nemo_peak_rss = self_peak_rss_mib()
        nemo_settings = (
            f"device {a.nemo_device}, {' and '.join(a.nemo_dtype)}, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, clips sorted longest first"
        )
        if own_oracle:
            del oracle
        gc.collect()
        serve = ServeOptions(
            url=a.url,
            metrics_url=a.metrics_url,
            export_dir=a.export_dir,
            checkpoint=ckpt,
            llm_dir=a.llm_dir,
            parity=not a.skip_parity,
            work_dir=work / "serve",
            repository=repo,
            precision=a.precision,
        )
        with served(serve) as target:
            tokens = TokenCounter.load(target.export_dir)
            export = export_description(target.export_dir)
            precision = ExportManifest.read(target.export_dir).precision if target.export_dir else None
            served_precision = precision.llm if precision else "fp32"
            encoder_precision = precision.encoder if precision else "fp32"
            nemo = combine_nemo(nemo_runs, {"fp32": "float32", "bf16": "bfloat16"}.get(served_precision, "float32"))
            models = served_settings(target.grpc_url, (C.ENSEMBLE_MODEL, *PIPELINE_MODELS))
            srv = served_side(
                target.grpc_url,
                clips,
                a.concurrency,
                max_new,
                a.warmup,
                nemo["texts"],
                tokens,
                a.timeout,
                a.repeats,
                target.process_group,
                target.metrics_url,
            )
            if latency_clip is not None:
                srv["latency"] = served_latency(target.grpc_url, latency_clip, max_new, a.repeats, a.timeout)
            srv["llm_mode"] = llm_mode_requests(target.grpc_url, a.llm_mode_requests, a.timeout)
            memory = group_memory(target.process_group)
    best = next(r for r in srv["rows"] if r["concurrency"] == srv["best_concurrency"])
    identical = all(not r["wrong"] for r in srv["rows"])
    payload = {
        "benchmark": "nemo_vs_served",
        "measured": "RTFx = total audio s / wall s (pooled) of NeMo SALM.generate in-process (best batch size) and "
        "of the served pipeline (best client concurrency), on the same clips and machine",
        "machine": machine,
        "checkpoint": {
            "path": str(ckpt),
            "size": None if a.checkpoint else a.size,
            "description": desc,
            "parameters": params,
        },
        "clips": {"manifest": str(a.manifest), "count": len(clips), "audio_s": float(sum(c.seconds for c in clips))},
        "max_new_tokens": max_new,
        "repeats": a.repeats,
        "nemo_settings": nemo_settings,
        "served_precision": served_precision,
        "served_encoder_precision": encoder_precision,
        "memory": {
            "nemo_process_peak_rss_mib": nemo_peak_rss,
            "server": memory,
            "llm_mode_requests": len(srv["llm_mode"]["seconds"]),
        },
        "server": {"how": target.how, "export": export, "models": models},
        "nemo": nemo,
        "served": srv,
        "ratio": srv["best_rtfx"] / nemo["best_rtfx"],
        "goal_ratio": GOAL_RATIO,
        "identical": identical,
    }
    md = render(payload)
    print(md)
    for p in write_outputs(a.out, "nemo_vs_served", payload, md):
        print(f"wrote {p}", file=sys.stderr)
    errors = (
        sum(len(r["errors"]) for r in srv["rows"])
        + len(srv["warmup"]["errors"])
        + len(srv["llm_mode"]["errors"])
        + len((srv.get("latency") or {}).get("errors", []))
    )
    mismatches = max(len(r["wrong"]) for r in srv["rows"])
    # bf16 served against NeMo bf16: batch composition moves near-tied logits, as the int8
    # encoder's rounding does (not an error here; the WER bounds are tested in
    # tests/test_cpu_llm_bf16.py and tests/test_encoder_int8.py). fp32 must be identical.
    allowed = a.max_mismatches if (served_precision, encoder_precision) == ("fp32", "fp32") else len(clips)
    if errors or mismatches > allowed:
        print(
            f"FAILED: {errors} request errors; up to {mismatches} served transcripts differ from NeMo's "
            f"(allowed {allowed}); examples: {best['wrong'][:3] or best['errors'][:3]}",
            file=sys.stderr,
        )
        return EXIT_WRONG
    return EXIT_OK


def _dtypes(text: str) -> tuple[str, ...]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in ("float32", "bfloat16", "float16")]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"dtypes are float32, bfloat16, float16; got {text!r}")
    return tuple(sorted(set(names), key=lambda t: t != "float32"))  # float32 first


class _NemoTokenizer:
    """NeMo's own tokenizer behind the ``encode`` the token counter calls."""

    def __init__(self, oracle):
        self._tok = oracle.model.tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self._tok.text_to_ids(text))


if __name__ == "__main__":
    raise SystemExit(main())
