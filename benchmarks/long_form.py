"""Long-form vs short-form: the same speech as one long recording and as pre-cut clips.

The long recording is the manifest's clips in order joined by silences drawn uniformly in
``--silence LOW,HIGH`` seconds (default 0.3..1.5, seeded). Short form: the clips themselves sent to
``canary_qwen`` with ``--concurrency`` requests in flight. Long form: the whole recording as one
request to ``canary_qwen_long`` (and, when served, streamed from ``canary_qwen_long_stream``:
time to the first segment's text). Warm-up excluded: ``--warmup`` short requests, and one long-form
request on the first few clips joined. Each side is timed ``--repeats`` times; the fastest pass
counts. Reported: RTFx of each (its own audio seconds / wall seconds, the leaderboard's pooled
definition), RTFx of the long form over its speech seconds only (silences excluded), and the
ratios long/short. Transcripts: pooled WER (leaderboard normaliser) of each against the
references, and of the long transcript against the short-form transcripts joined.

Exit codes: 1 a request failed, or the long-form WER exceeds the short-form WER by more than
``--max-wer-increase`` (against the references; against the short-form transcripts when the
manifest has none), or the streamed segments do not join to the unary long transcript; 3 the
server has no ready ``canary_qwen_long`` (short-form figures are still printed). Usage:

    python -m benchmarks.long_form [--url HOST:8001 | --export-dir OUT | --checkpoint DIR]
        [--manifest M.jsonl] [--limit N] [--silence 0.3,1.5] [--seed 0] [--concurrency 8]
        [--repeats 2] [--out DIR] [--write-audio long.wav]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks._common import (
    EXIT_NOT_RUN,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRONG,
    HELDOUT_MANIFEST,
    SAMPLE_RATE,
    Clip,
    ServeOptions,
    concatenate,
    latency_summary,
    load_clips,
    machine_info,
    machine_line,
    markdown_table,
    model_ready,
    served,
    served_models,
    silence_gaps,
    write_outputs,
)
from canary_triton import contract as C
from canary_triton.client.api import CanaryClient
from canary_triton.client.audio_input import Audio
from canary_triton.client.calls import audio_request
from canary_triton.client.options import ClientOptions
from canary_triton.evaluation.wer import leaderboard_normalize, wer

# soundfile is imported where the long recording is written (--write-audio).

LONG_WARMUP_CLIPS = 4


def _wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    return wer(refs, hyps, normalize=leaderboard_normalize)


def short_form(
    client, clips: Sequence[Clip], concurrency: int, warmup: int, repeats: int, max_new_tokens: int | None
) -> dict[str, Any]:
    audios = [Audio(c.samples, c.name) for c in clips]
    warm = client.transcribe_many(audios[:warmup], concurrency=concurrency, max_new_tokens=max_new_tokens)
    passes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        results = client.transcribe_many(audios, concurrency=concurrency, max_new_tokens=max_new_tokens)
        passes.append((time.perf_counter() - t0, results))
    wall, results = min(passes, key=lambda p: p[0])
    audio_s = float(sum(c.seconds for c in clips))
    return {
        "requests": len(clips),
        "audio_s": audio_s,
        "wall_s": wall,
        "pass_wall_s": [p[0] for p in passes],
        "rtfx": audio_s / wall,
        "concurrency": concurrency,
        **latency_summary([r.latency_s for r in results if r.ok]),
        "errors": [f"{r.name}: {r.error}" for p in passes for r in p[1] if not r.ok]
        + [f"warm-up {r.name}: {r.error}" for r in warm if not r.ok],
        "texts": [r.text for r in results],
    }


def _long_request(client, recording: Clip, max_new_tokens: int | None) -> tuple[str, float]:
    arrays = audio_request(Audio(recording.samples, recording.name), max_new_tokens)
    t0 = time.perf_counter()
    text = client.infer(C.LONG_FORM_MODEL, arrays, C.TRANSCRIPT.name)
    return text, time.perf_counter() - t0


def long_form(
    client, recording: Clip, warm_recording: Clip, speech_s: float, repeats: int, max_new_tokens: int | None
) -> dict[str, Any]:
    _long_request(client, warm_recording, max_new_tokens)  # warm-up, excluded
    passes = [_long_request(client, recording, max_new_tokens) for _ in range(repeats)]
    text, wall = min(passes, key=lambda p: p[1])
    return {
        "audio_s": recording.seconds,
        "speech_s": speech_s,
        "wall_s": wall,
        "pass_wall_s": [p[1] for p in passes],
        "rtfx": recording.seconds / wall,
        "rtfx_speech_only": speech_s / wall,
        "text": text,
        "texts_identical_across_passes": len({p[0] for p in passes}) == 1,
    }


def long_stream(client, recording: Clip, max_new_tokens: int | None) -> dict[str, Any]:
    arrays = audio_request(Audio(recording.samples, recording.name), max_new_tokens)
    t0 = time.perf_counter()
    first = None
    pieces: list[str] = []
    for piece in client._stream(C.LONG_FORM_STREAM_MODEL, arrays, C.TRANSCRIPT.name):
        if first is None:
            first = time.perf_counter() - t0
        pieces.append(piece)
    wall = time.perf_counter() - t0
    return {
        "first_piece_s": first,
        "wall_s": wall,
        "rtfx": recording.seconds / wall,
        "pieces": len(pieces),
        "text": " ".join(p.strip() for p in pieces if p.strip()),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def render(p: dict[str, Any]) -> str:
    s, lf = p["short"], p.get("long")
    head = (
        f"Measured: long-form vs short-form on the same speech; {p['audio']['clips']} clips "
        f"({p['audio']['speech_s']:.1f} s of speech) from {p['audio']['manifest']}, joined with silences of "
        f"{p['audio']['silence_s'][0]}..{p['audio']['silence_s'][1]} s (seed {p['audio']['seed']}) into one "
        f"{p['audio']['long_s']:.1f} s recording.\nMachine: {machine_line(p['machine'])}. Server: "
        f"{p['server']['how']}.\nWarm-up excluded; each side timed {p['repeats']} time(s), fastest pass counts."
    )
    rows = [
        [
            "short form (clips)",
            C.ENSEMBLE_MODEL,
            s["requests"],
            s["concurrency"],
            s["audio_s"],
            s["wall_s"],
            s["rtfx"],
            "-",
            _pct(s["wer"]),
        ]
    ]
    if lf is not None:
        rows.append(
            [
                "long form (one recording)",
                C.LONG_FORM_MODEL,
                1,
                1,
                lf["audio_s"],
                lf["wall_s"],
                lf["rtfx"],
                lf["rtfx_speech_only"],
                _pct(lf["wer"]),
            ]
        )
    table = markdown_table(
        [
            "form",
            "model",
            "requests",
            "concurrency",
            "audio s",
            "wall s",
            "RTFx",
            "RTFx (speech s only)",
            "WER vs references",
        ],
        rows,
    )
    lines = [head, "", table, ""]
    if lf is None:
        lines.append(f"Long form NOT measured: {p['long_missing']}")
    else:
        lines.append(
            f"**Long/short RTFx ratio: {lf['rtfx'] / s['rtfx']:.2f}** (on speech seconds only: "
            f"{lf['rtfx_speech_only'] / s['rtfx']:.2f}). WER of the long transcript against the short-form "
            f"transcripts joined: {100 * lf['wer_vs_short']:.2f}%."
        )
        st = p.get("long_stream")
        if st is not None:
            lines.append(
                f"Streamed ({C.LONG_FORM_STREAM_MODEL}): first segment after "
                f"{st['first_piece_s']:.2f} s, "
                f"{st['pieces']} pieces, whole recording in {st['wall_s']:.2f} s (RTFx {st['rtfx']:.1f}); "
                f"joined text equals the unary transcript: {st['matches_unary']}."
            )
        elif p.get("long_stream_missing"):
            lines.append(f"Streaming long form not measured: {p['long_stream_missing']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="gRPC address of a running server (default: start one here)")
    ap.add_argument("--export-dir", type=Path, help="an export folder to serve here")
    ap.add_argument(
        "--checkpoint", type=Path, help="exported here when no export folder is given (default: tiny-trained)"
    )
    ap.add_argument("--llm-dir", type=Path)
    ap.add_argument("--manifest", type=Path, default=HELDOUT_MANIFEST)
    ap.add_argument("--limit", type=int, help="use the first N clips")
    ap.add_argument("--silence", default="0.3,1.5", help="LOW,HIGH seconds of silence between clips")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=8, help="short form: requests in flight")
    ap.add_argument("--warmup", type=int, default=4, help="short-form warm-up requests (excluded)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, help="per request (default: the server's)")
    ap.add_argument(
        "--max-wer-increase",
        type=float,
        default=0.05,
        help="long-form WER may exceed short-form WER by this much (absolute, 0.05 = 5 points)",
    )
    ap.add_argument("--no-stream", action="store_true", help="skip the streaming long-form model")
    ap.add_argument("--skip-parity", action="store_true")
    ap.add_argument(
        "--long-form-merge-s",
        type=float,
        help="export made here: segments merge speech up to this span (the tiny fixtures know single "
        "utterances only: use 0.5 with them; default: the export's own)",
    )
    ap.add_argument("--work-dir", type=Path)
    ap.add_argument("--write-audio", type=Path, help="also write the long recording here (WAV, 16 kHz)")
    ap.add_argument("--out", type=Path, help="write long_form.json / .md here")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per request")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        lo, hi = (float(x) for x in a.silence.split(","))
        gaps = silence_gaps(0, a.seed, lo, hi)
    except ValueError as e:
        print(f"error: --silence must be LOW,HIGH seconds with 0 <= LOW <= HIGH: {e}", file=sys.stderr)
        return EXIT_USAGE
    machine = machine_info()
    clips = load_clips(a.manifest, a.limit)
    if len(clips) < 2:
        print("error: long form needs at least 2 clips", file=sys.stderr)
        return EXIT_USAGE
    gaps = silence_gaps(len(clips) - 1, a.seed, lo, hi)
    recording = concatenate(clips, gaps, "long")
    warm_recording = concatenate(clips[:LONG_WARMUP_CLIPS], gaps, "long-warmup")
    speech_s = float(sum(c.seconds for c in clips))
    if a.write_audio:
        import soundfile as sf

        a.write_audio.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(a.write_audio), recording.samples, SAMPLE_RATE)
    refs = [c.text for c in clips]
    have_refs = all(isinstance(t, str) for t in refs)
    payload: dict[str, Any] = {
        "benchmark": "long_form",
        "measured": "RTFx (audio s / wall s) of short-form clips vs the same speech as one long recording",
        "machine": machine,
        "repeats": a.repeats,
        "audio": {
            "manifest": str(a.manifest),
            "clips": len(clips),
            "speech_s": speech_s,
            "long_s": recording.seconds,
            "silence_s": [lo, hi],
            "seed": a.seed,
            "gaps_s": gaps,
        },
    }
    failures: list[str] = []
    repo = (("long_form_merge_s", a.long_form_merge_s),) if a.long_form_merge_s is not None else ()
    serve = ServeOptions(
        url=a.url,
        export_dir=a.export_dir,
        checkpoint=a.checkpoint,
        llm_dir=a.llm_dir,
        parity=not a.skip_parity,
        work_dir=a.work_dir,
        repository=repo,
    )
    with served(serve) as target:
        payload["server"] = {"how": target.how, "url": target.grpc_url}
        with CanaryClient(
            options=ClientOptions(url=target.grpc_url, timeout_s=a.timeout), concurrency=a.concurrency
        ) as client:
            client.wait_ready()
            s = short_form(client, clips, a.concurrency, a.warmup, a.repeats, a.max_new_tokens)
            s["wer"] = _wer(refs, [t or "" for t in s["texts"]]) if have_refs else None
            payload["short"] = s
            failures += s["errors"]
            if not model_ready(target.grpc_url, C.LONG_FORM_MODEL):
                payload["long"] = None
                payload["long_missing"] = (
                    f"the server at {target.grpc_url} has no ready model '{C.LONG_FORM_MODEL}' (ready: "
                    f"{', '.join(served_models(target.grpc_url)) or 'none'}). Serve an export made by a version of "
                    f"the project whose repository includes it, then rerun."
                )
            else:
                try:
                    lf = long_form(client, recording, warm_recording, speech_s, a.repeats, a.max_new_tokens)
                except Exception as e:  # noqa: BLE001  reported as a failed request
                    failures.append(f"{C.LONG_FORM_MODEL}: {e}")
                    lf = None
                if lf is not None:
                    short_joined = " ".join(t or "" for t in s["texts"])
                    lf["wer"] = _wer([" ".join(refs)], [lf["text"]]) if have_refs else None
                    lf["wer_vs_short"] = _wer([short_joined], [lf["text"]])
                    base, got = (s["wer"], lf["wer"]) if have_refs else (0.0, lf["wer_vs_short"])
                    if got - base > a.max_wer_increase:
                        failures.append(
                            f"long-form WER {100 * got:.2f}% exceeds the short-form "
                            f"{100 * base:.2f}% by more than {100 * a.max_wer_increase:.1f} points"
                        )
                    payload["long"] = lf
                    payload["ratio_long_over_short"] = lf["rtfx"] / s["rtfx"]
                    payload["ratio_long_speech_only_over_short"] = lf["rtfx_speech_only"] / s["rtfx"]
                    if not a.no_stream:
                        _measure_stream(client, target.grpc_url, recording, lf, a.max_new_tokens, payload, failures)
    payload["failures"] = failures
    md = render(payload)
    print(md)
    for p in write_outputs(a.out, "long_form", payload, md):
        print(f"wrote {p}", file=sys.stderr)
    if failures:
        print("FAILED: " + "; ".join(failures[:5]), file=sys.stderr)
        return EXIT_WRONG
    if payload["long"] is None:
        print(f"error: {payload['long_missing']}", file=sys.stderr)
        return EXIT_NOT_RUN
    return EXIT_OK


def _measure_stream(
    client,
    url: str,
    recording: Clip,
    lf: dict[str, Any],
    max_new_tokens: int | None,
    payload: dict[str, Any],
    failures: list[str],
) -> None:
    if not model_ready(url, C.LONG_FORM_STREAM_MODEL):
        payload["long_stream_missing"] = f"no ready model '{C.LONG_FORM_STREAM_MODEL}' at {url}"
        return
    try:
        st = long_stream(client, recording, max_new_tokens)
    except Exception as e:  # noqa: BLE001
        failures.append(f"{C.LONG_FORM_STREAM_MODEL}: {e}")
        return
    st["matches_unary"] = leaderboard_normalize(st["text"]) == leaderboard_normalize(lf["text"])
    if not st["matches_unary"]:
        failures.append(f"{C.LONG_FORM_STREAM_MODEL}: the streamed segments do not join to the unary transcript")
    payload["long_stream"] = st


if __name__ == "__main__":
    raise SystemExit(main())
