"""Long-form segmenters against known truth: energy vs Silero, side by side.

Recordings are built from the manifest's clips (default: the 45 held-out utterances) joined by
pauses drawn uniformly in ``--pauses LOW,HIGH`` seconds (default 0.2..2), so every utterance's
voiced span is known (where its level passes -60 dBFS). Conditions: clean, and with white,
pink or babble noise (other utterances of the set mixed under, four at a time) at each of
``--snr`` dB (default 20,10,5,0; SNR over the voiced samples). Each segmenter cuts each
recording with the long-form path's own code (canary_triton.longform.segmenter, ``--merge-s``: default
the tiny fixtures' merge length, one utterance per segment). Reported per condition and
segmenter:

- cut precision: the fraction of cuts (segment starts and ends) that fall outside every
  utterance's voiced span shrunk by ``--tolerance-s`` (a cut inside a word is an error);
- cut recall: the fraction of pauses holding at least one cut (tolerance widened alike);
- speech kept: the fraction of voiced samples inside some segment (what is never sent is lost);
- segmenter RTFx (audio seconds / seconds spent segmenting, this process).

With a server (``--url``, or one started here as benchmarks/_common.py does, unless
``--no-server``): long-form WER of each segmenter's segments (sent to ``canary_qwen``
concurrently and joined as the long-form model joins them: the same text the server's
``canary_qwen_long`` returns with that segmenter, tests/test_longform_transcribe.py) against the
references and against the same utterances transcribed one by one (cut at their true bounds,
noise included); RTFx of the long-form path (segmenting + transcribing, wall clock; for the
served default also through ``canary_qwen_long`` itself); and characters per minute emitted on
audio with no speech (pink noise, synthetic music, near-silence with clicks), for each
segmenter and for the plain model (the audio sent whole, in <= 40 s pieces).

    python -m benchmarks.vad_eval [--url HOST:8001 | --export-dir OUT | --checkpoint DIR | --no-server]
        [--clips 20] [--pauses 0.2,2] [--snr 20,10,5,0] [--noises white,pink,babble]
        [--no-speech-s 60] [--merge-s 0.5] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks._common import (
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRONG,
    HELDOUT_MANIFEST,
    SAMPLE_RATE,
    Clip,
    ServeOptions,
    load_clips,
    machine_info,
    machine_line,
    markdown_table,
    served,
    write_outputs,
)
from canary_triton import contract as C
from canary_triton.client import CanaryClient, ClientOptions
from canary_triton.client.audio_input import Audio
from canary_triton.client.calls import audio_request
from canary_triton.evaluation.wer import wer
from canary_triton.fixtures import noise
from canary_triton.fixtures.tiny import TINY_LONG_FORM_MERGE_S
from canary_triton.longform.segmenter import VADS, SegmentOptions, TextJoiner, model_input, split

SR = SAMPLE_RATE
VOICED_DBFS = -60.0


@dataclass(frozen=True)
class Recording:
    name: str
    audio: np.ndarray
    spans: list[tuple[int, int]]  # each utterance's voiced samples
    extents: list[tuple[int, int]]  # each clip's whole extent (its own leading/trailing silence too)
    texts: list[str]


def voiced(audio: np.ndarray, frame: int = 160) -> tuple[int, int]:
    """First and last sample of the 10 ms frames above -60 dBFS."""
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    loud = np.flatnonzero(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) > 10 ** (VOICED_DBFS / 20))
    return (int(loud[0]) * frame, int(loud[-1] + 1) * frame) if len(loud) else (0, 0)


def build(clips: Sequence[Clip], count: int, pauses: tuple[float, float], seed: int, name: str) -> Recording:
    rng = np.random.default_rng(seed)
    lead = int(0.5 * SR)
    parts, spans, extents, texts, t = [np.zeros(lead, np.float32)], [], [], [], lead
    for _ in range(count):
        c = clips[int(rng.integers(len(clips)))]
        a, b = voiced(c.samples)
        parts.append(c.samples)
        spans.append((t + a, t + b))
        extents.append((t, t + len(c.samples)))
        texts.append(c.text or "")
        t += len(c.samples)
        gap = int(rng.uniform(*pauses) * SR)
        parts.append(np.zeros(gap, np.float32))
        t += gap
    return Recording(name, np.concatenate(parts), spans, extents, texts)


def babble(clips: Sequence[Clip], seconds: float, seed: int, talkers: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = np.zeros(n)
    for _ in range(talkers):
        stream = np.concatenate([clips[int(k)].samples for k in rng.integers(len(clips), size=int(seconds) + 4)])
        out += np.resize(stream, n)
    return out.astype(np.float32)


def noisy(rec: Recording, kind: str, snr_db: float, clips: Sequence[Clip], seed: int) -> Recording:
    seconds = len(rec.audio) / SR
    source = {
        "white": lambda: noise.white_noise(seconds, seed),
        "pink": lambda: noise.pink_noise(seconds, seed),
        "babble": lambda: babble(clips, seconds, seed),
    }[kind]()
    mask = np.zeros(len(rec.audio), bool)
    for a, b in rec.spans:
        mask[a:b] = True
    return replace(rec, name=f"{kind} {snr_db:g} dB", audio=noise.mix_at_snr(rec.audio, source, snr_db, mask))


def cut_scores(rec: Recording, segments, tolerance_s: float) -> dict[str, float]:
    tol = int(tolerance_s * SR)
    cuts = [x for s in segments for x in (s.start, s.end)]
    inside = sum(any(a + tol < c < b - tol for a, b in rec.spans) for c in cuts)
    pauses = list(zip([b for _, b in rec.spans[:-1]], [a for a, _ in rec.spans[1:]]))
    found = sum(any(lo - tol <= c <= hi + tol for c in cuts) for lo, hi in pauses)
    covered = np.zeros(len(rec.audio), bool)
    for s in segments:
        covered[s.start : s.end] = True
    voiced_total = sum(b - a for a, b in rec.spans)
    kept = sum(int(covered[a:b].sum()) for a, b in rec.spans)
    return {
        "cuts": len(cuts),
        "precision": 1 - inside / len(cuts) if cuts else 1.0,
        "recall": found / len(pauses) if pauses else 1.0,
        "speech_kept": kept / voiced_total if voiced_total else 1.0,
    }


def segment(audio: np.ndarray, opts: SegmentOptions):
    t0 = time.perf_counter()
    segs = split(audio, SR, opts)
    return segs, time.perf_counter() - t0


def transcribe_segments(client, audio: np.ndarray, segs, opts: SegmentOptions, concurrency: int) -> str:
    """What canary_qwen_long returns for these segments: each sent to canary_qwen (padded as the
    long-form model pads it), joined in order."""
    results = client.transcribe_many([model_input(audio, s, opts, SR) for s in segs], concurrency=concurrency)
    joiner = TextJoiner()
    for s, r in zip(segs, results):
        if not r.ok:
            raise RuntimeError(r.error)
        joiner.push(s, r.text)
    return joiner.text


def _wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate with the simple normaliser (lower case, no punctuation): the leaderboard's
    would join each spoken digit string into one number token."""
    return wer(refs, hyps)


def no_speech_audio(seconds: float, seed: int) -> dict[str, np.ndarray]:
    return {
        "pink noise": noise.pink_noise(seconds, seed),
        "synthetic music": noise.synthetic_music(seconds, seed),
        "near-silence with clicks": noise.near_silence_with_clicks(seconds, seed),
    }


def plain_chunks(audio: np.ndarray) -> list[np.ndarray]:
    step = int(C.MAX_AUDIO_SECONDS * SR)
    return [audio[i : i + step] for i in range(0, len(audio), step)]


def render(p: dict[str, Any]) -> str:
    lines = [
        f"# Long-form segmenters: energy vs Silero ({machine_line(p['machine'])})",
        "",
        f"{p['audio']['clips']} utterances per recording, pauses {p['audio']['pauses_s'][0]:g}-"
        f"{p['audio']['pauses_s'][1]:g} s, merge {p['merge_s']:g} s, cut tolerance {p['tolerance_s']:g} s, "
        f"seed {p['audio']['seed']}.",
        "",
    ]
    served_ = p.get("server") is not None
    head = ["condition", "segmenter", "cuts", "cut precision", "cut recall", "speech kept", "segmenter RTFx"]
    if served_:
        head += ["WER long-form %", "WER one by one %", "long-form RTFx"]
    rows = []
    for r in p["rows"]:
        row = [
            r["condition"],
            r["vad"],
            r["cuts"],
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
            f"{r['speech_kept']:.3f}",
            f"{r['segmenter_rtfx']:.0f}",
        ]
        if served_:
            row += [f"{100 * r['wer']:.1f}", f"{100 * r['wer_one_by_one']:.1f}", f"{r['long_form_rtfx']:.1f}"]
        rows.append(row)
    lines += [markdown_table(head, rows), ""]
    ns = p["no_speech"]
    head = ["no-speech audio", *(f"{v}: segments" for v in VADS)]
    if served_:
        head += [f"{v}: chars/min" for v in VADS] + ["plain model: chars/min"]
    rows = []
    for kind, r in ns.items():
        row = [kind, *(r[v]["segments"] for v in VADS)]
        if served_:
            row += [f"{r[v]['chars_per_min']:.0f}" for v in VADS] + [f"{r['plain']['chars_per_min']:.0f}"]
        rows.append(row)
    lines += [markdown_table(head, rows), ""]
    if p.get("served_long_form"):
        s = p["served_long_form"]
        lines += [
            f"Served `{C.LONG_FORM_MODEL}` (its export's segmenter, {s['vad']}) on the clean recording: "
            f"RTFx {s['rtfx']:.1f}, WER {100 * s['wer']:.1f}%, same text as the emulation: {s['matches']}.",
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=HELDOUT_MANIFEST)
    ap.add_argument("--clips", type=int, default=20, help="utterances per recording")
    ap.add_argument("--pauses", default="0.2,2", help="LOW,HIGH pause seconds")
    ap.add_argument("--snr", default="20,10,5,0")
    ap.add_argument("--noises", default="white,pink,babble")
    ap.add_argument("--no-speech-s", type=float, default=60.0)
    ap.add_argument("--merge-s", type=float, default=TINY_LONG_FORM_MERGE_S)
    ap.add_argument("--tolerance-s", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--url")
    ap.add_argument("--export-dir", type=Path)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--no-server", action="store_true", help="segmenter figures only")
    ap.add_argument("--skip-parity", action="store_true")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    try:
        lo, hi = (float(x) for x in a.pauses.split(","))
        snrs = [float(x) for x in a.snr.split(",") if x]
        kinds = [k for k in a.noises.split(",") if k]
        if not 0 <= lo <= hi or set(kinds) - {"white", "pink", "babble"} or a.clips < 2:
            raise ValueError(a.pauses)
        base_opts = SegmentOptions(merge_s=a.merge_s)
    except ValueError as e:
        print(
            f"error: bad option ({e}); --pauses LOW,HIGH, --noises among white,pink,babble, --clips >= 2, "
            f"--merge-s in (0, {C.MAX_AUDIO_SECONDS:g}]",
            file=sys.stderr,
        )
        return EXIT_USAGE
    clips = load_clips(a.manifest)
    clean = build(clips, a.clips, (lo, hi), a.seed, "clean")
    conditions = [clean] + [noisy(clean, k, snr, clips, a.seed + 1) for k in kinds for snr in snrs]
    payload: dict[str, Any] = {
        "benchmark": "vad_eval",
        "machine": machine_info(),
        "merge_s": a.merge_s,
        "tolerance_s": a.tolerance_s,
        "audio": {
            "manifest": str(a.manifest),
            "clips": a.clips,
            "pauses_s": [lo, hi],
            "seed": a.seed,
            "seconds": len(clean.audio) / SR,
            "snr_db": snrs,
            "noises": kinds,
        },
    }
    rows: list[dict[str, Any]] = []
    for rec in conditions:
        for vad in VADS:
            segs, took = segment(rec.audio, replace(base_opts, vad=vad))
            rows.append(
                {
                    "condition": rec.name,
                    "vad": vad,
                    **cut_scores(rec, segs, a.tolerance_s),
                    "segmenter_rtfx": len(rec.audio) / SR / took,
                    "_segments": segs,
                    "_rec": rec,
                }
            )
    silent = no_speech_audio(a.no_speech_s, a.seed)
    ns: dict[str, dict[str, Any]] = {
        k: {v: {"segments": len(split(x, SR, replace(base_opts, vad=v)))} for v in VADS} for k, x in silent.items()
    }
    failures: list[str] = []
    if not a.no_server:
        serve = ServeOptions(
            url=a.url,
            export_dir=a.export_dir,
            checkpoint=a.checkpoint,
            parity=not a.skip_parity,
            repository=(("long_form_merge_s", a.merge_s),),
        )
        with served(serve) as target:
            payload["server"] = {"how": target.how, "url": target.grpc_url}
            with CanaryClient(
                options=ClientOptions(url=target.grpc_url, timeout_s=a.timeout), concurrency=a.concurrency
            ) as client:
                client.wait_ready()
                client.transcribe_many([c.samples for c in clips[:4]], concurrency=a.concurrency)  # warm-up
                alone: dict[str, str] = {}
                for rec in conditions:
                    pieces = client.transcribe_many([rec.audio[x:y] for x, y in rec.extents], concurrency=a.concurrency)
                    alone[rec.name] = " ".join(r.text or "" for r in pieces)
                for r in rows:
                    rec = r.pop("_rec")
                    segs = r.pop("_segments")
                    t0 = time.perf_counter()
                    opts = replace(base_opts, vad=r["vad"])
                    segs_again, _ = segment(rec.audio, opts)
                    text = transcribe_segments(client, rec.audio, segs_again, opts, a.concurrency)
                    wall = time.perf_counter() - t0
                    ref = " ".join(rec.texts)
                    r.update(
                        wer=_wer([ref], [text]),
                        wer_one_by_one=_wer([ref], [alone[rec.name]]),
                        long_form_rtfx=len(rec.audio) / SR / wall,
                        text=text,
                    )
                for kind, x in silent.items():
                    minutes = len(x) / SR / 60
                    for v in VADS:
                        opts = replace(base_opts, vad=v)
                        segs = split(x, SR, opts)
                        text = transcribe_segments(client, x, segs, opts, a.concurrency) if segs else ""
                        ns[kind][v].update(chars=len(text), chars_per_min=len(text) / minutes)
                    pieces = client.transcribe_many(plain_chunks(x), concurrency=a.concurrency)
                    text = " ".join(p.text or "" for p in pieces).strip()
                    ns[kind]["plain"] = {"chars": len(text), "chars_per_min": len(text) / minutes}

                t0 = time.perf_counter()
                got = client.infer(
                    C.LONG_FORM_MODEL, audio_request(Audio(clean.audio, "clean"), None), C.TRANSCRIPT.name
                )
                wall = time.perf_counter() - t0
                default = next(r for r in rows if r["condition"] == "clean" and r["vad"] == base_opts.vad)
                payload["served_long_form"] = {
                    "vad": base_opts.vad,
                    "rtfx": len(clean.audio) / SR / wall,
                    "wer": _wer([" ".join(clean.texts)], [got]),
                    "matches": got == default["text"],
                }
                if not payload["served_long_form"]["matches"]:
                    failures.append("canary_qwen_long's text differs from its segments joined")
    for r in rows:
        r.pop("_rec", None)
        r.pop("_segments", None)
    payload["rows"], payload["no_speech"], payload["failures"] = rows, ns, failures
    md = render(payload)
    print(md)
    for path in write_outputs(a.out, "vad_eval", payload, md):
        print(f"wrote {path}", file=sys.stderr)
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return EXIT_WRONG
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
