"""WER of the served pipeline on real test sets: NeMo manifests or Hugging Face audio datasets.

Each set's audio is decoded beforehand (not timed), sent through the served ensemble with
``CanaryClient.transcribe_many`` (``--concurrency`` in flight, in chunks of ``--chunk`` items so a
large set never sits in memory whole), and scored as the Open ASR Leaderboard scores it:
references and predictions through Whisper's English normaliser
(``canary_triton.evaluation.wer.leaderboard_normalize``), items whose normalised reference is empty or
"ignore time segment in scoring" dropped, WER pooled over the set (total edits / total words).
RTFx = the set's audio seconds / the wall seconds of its transcription requests. The summary gives
the mean WER over the sets (the leaderboard's average) and the composite RTFx (all audio / all
time).

Sources: ``--manifest FILE`` (repeatable; NeMo JSON lines: audio_filepath, duration, text), or
``--hf-dataset PATH`` (a hub id such as ``hf-audio/esb-datasets-test-only-sorted`` or
``hf-audio/open-asr-leaderboard``, or a local folder) with ``--hf-sets CONFIG:SPLIT,...`` (default:
the leaderboard's eight English sets), streamed unless ``--no-streaming``. The ``audio`` column
is read undecoded (bytes or path) and decoded here, so no audio backend of ``datasets`` is needed.
Hub sets need network access and, for gated ones, ``huggingface-cli login``.

Exit codes: 1 any request failed, or a set's WER exceeds ``--max-wer``; 2 usage. Usage:

    python -m benchmarks.wer_eval --manifest test.jsonl [--url HOST:8001 | --export-dir OUT | --checkpoint DIR]
    python -m benchmarks.wer_eval --hf-dataset hf-audio/esb-datasets-test-only-sorted \\
        [--hf-sets librispeech:test.clean,ami:test] [--max-samples N] --url HOST:8001 --out results/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from benchmarks._common import (
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRONG,
    SAMPLE_RATE,
    ServeOptions,
    machine_info,
    machine_line,
    markdown_table,
    served,
    write_outputs,
)
from canary_triton.client.api import CanaryClient
from canary_triton.client.audio_input import as_audio
from canary_triton.client.options import ClientOptions
from canary_triton.errors import CanaryTritonError
from canary_triton.evaluation.nemo_manifest import AUDIO_KEY, DURATION_KEY, TEXT_KEY, read_manifest
from canary_triton.evaluation.wer import leaderboard_normalize, wer

# datasets (the Hugging Face dataset path) and soundfile (--save-audio) are imported where used.

#: The Open ASR Leaderboard's English test sets (config:split of hf-audio/esb-datasets-test-only-sorted).
LEADERBOARD_SETS = (
    "ami:test",
    "earnings22:test",
    "gigaspeech:test",
    "librispeech:test.clean",
    "librispeech:test.other",
    "spgispeech:test",
    "tedlium:test",
    "voxpopuli:test",
)
DEFAULT_HF_DATASET = "hf-audio/esb-datasets-test-only-sorted"
#: Reference columns the leaderboard accepts, in its order of preference.
TEXT_COLUMNS = ("text", "sentence", "normalized_text", "transcript", "transcription")
IGNORED_REFERENCE = "ignore time segment in scoring"


@dataclass(frozen=True)
class Item:
    """One utterance: an id, its audio as a path or encoded bytes, and the reference text."""

    id: str
    audio: str | bytes
    text: str


def reference_text(row: dict) -> str:
    for col in TEXT_COLUMNS:
        if col in row and row[col] is not None:
            return str(row[col])
    raise ValueError(f"no reference column among {', '.join(TEXT_COLUMNS)}; the row has {', '.join(row)}")


def manifest_items(path: Path, max_samples: int | None) -> Iterator[Item]:
    rows = read_manifest(path)
    missing = [i for i, r in enumerate(rows) if not isinstance(r.get(TEXT_KEY), str)]
    if missing:
        raise ValueError(f"manifest {path}: {len(missing)} rows have no '{TEXT_KEY}' (first: line {missing[0] + 1})")
    for r in rows[:max_samples]:
        yield Item(r[AUDIO_KEY], r[AUDIO_KEY], r[TEXT_KEY])


def hf_items(dataset: str, config: str | None, split: str, streaming: bool, max_samples: int | None) -> Iterator[Item]:
    """Rows of a Hugging Face audio dataset with the ``audio`` column undecoded (bytes or path)."""
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "the Hugging Face path needs `datasets` (pip install 'canary-triton[export]' or pip install 'datasets<5')"
        ) from None
    ds = datasets.load_dataset(dataset, config, split=split, streaming=streaming)
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    if max_samples is not None:
        ds = ds.take(max_samples) if streaming else ds.select(range(min(max_samples, len(ds))))
    for n, row in enumerate(ds):
        audio = row["audio"]
        source = audio.get("bytes") or audio.get("path")
        if not source:
            raise ValueError(f"{dataset} {config}:{split} row {n} has neither audio bytes nor a path")
        yield Item(str(row.get("id") or audio.get("path") or n), source, reference_text(row))


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for it in items:
        chunk.append(it)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def evaluate_set(
    client,
    name: str,
    items: Iterable[Item],
    concurrency: int,
    chunk: int,
    max_new_tokens: int | None,
    predictions_path: Path | None,
    save_audio: Path | None = None,
) -> dict[str, Any]:
    refs: list[str] = []
    hyps: list[str] = []
    n = skipped = 0
    audio_s = wall = 0.0
    errors: list[str] = []
    out = predictions_path.open("w", encoding="utf-8") if predictions_path else None
    saved = None
    if save_audio is not None:
        save_audio.mkdir(parents=True, exist_ok=True)
        saved = (save_audio / "manifest.jsonl").open("w", encoding="utf-8")
    try:
        for part in _chunks(items, chunk):
            kept = []
            for it in part:
                norm = leaderboard_normalize(it.text).strip()
                if not norm or norm == IGNORED_REFERENCE:
                    skipped += 1
                    continue
                try:
                    kept.append((it, as_audio(it.audio, name=it.id)))  # decoded before the clock starts
                except CanaryTritonError as e:
                    errors.append(f"{it.id}: {e}")
            if not kept:
                continue
            t0 = time.perf_counter()
            results = client.transcribe_many(
                [a for _, a in kept], concurrency=concurrency, max_new_tokens=max_new_tokens
            )
            wall += time.perf_counter() - t0
            for (it, a), r in zip(kept, results):
                n += 1
                audio_s += a.seconds
                if saved is not None:
                    _save(save_audio, saved, n, it, a)
                row: dict[str, Any] = {"id": it.id, "duration": round(a.seconds, 4), "text": it.text}
                if r.ok:
                    refs.append(it.text)
                    hyps.append(r.text or "")
                    row.update(pred_text=r.text, wer=round(wer([it.text], [r.text or ""], leaderboard_normalize), 4))
                else:
                    errors.append(f"{it.id}: {r.error}")
                    row["error"] = r.error
                if out is not None:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            print(
                f"{name}: {n} items, {audio_s / 3600:.3f} h, RTFx {audio_s / max(wall, 1e-9):.1f}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        for f in (out, saved):
            if f is not None:
                f.close()
    pooled = wer(refs, hyps, normalize=leaderboard_normalize) if refs else None
    return {
        "set": name,
        "items": n,
        "scored": len(refs),
        "skipped_empty_references": skipped,
        "audio_s": audio_s,
        "wall_s": wall,
        "rtfx": audio_s / wall if wall > 0 else None,
        "wer": pooled,
        "errors": errors,
        "predictions": str(predictions_path) if predictions_path else None,
    }


def _save(folder: Path, manifest, n: int, it: Item, audio) -> None:
    """The decoded 16 kHz audio as WAV plus a NeMo manifest row (for the other benchmarks)."""
    import soundfile as sf

    stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in Path(it.id).stem)[-60:]
    path = folder / f"{n:06d}_{stem}.wav"
    sf.write(str(path), audio.samples, SAMPLE_RATE, subtype="FLOAT")
    manifest.write(
        json.dumps({AUDIO_KEY: path.name, DURATION_KEY: round(audio.seconds, 4), TEXT_KEY: it.text}, ensure_ascii=False)
        + "\n"
    )


def render(p: dict[str, Any]) -> str:
    head = (
        f"Measured: WER (Whisper English normaliser, pooled per set, as the Open ASR Leaderboard) and RTFx "
        f"(audio s / wall s of the transcription requests; decoding excluded) through the served pipeline "
        f"({p['server']['how']}), concurrency {p['concurrency']}.\nMachine: {machine_line(p['machine'])}."
    )
    rows = [
        [
            s["set"],
            s["items"],
            s["skipped_empty_references"],
            f"{s['audio_s'] / 3600:.3f}",
            s["rtfx"],
            f"{100 * s['wer']:.2f}" if s["wer"] is not None else "-",
            len(s["errors"]),
        ]
        for s in p["sets"]
    ]
    table = markdown_table(["set", "items", "skipped (empty ref)", "audio h", "RTFx", "WER %", "errors"], rows)
    summ = p["summary"]
    tail = (
        f"Mean WER over {len(p['sets'])} set(s): {100 * summ['mean_wer']:.2f}%; composite RTFx "
        f"{summ['composite_rtfx']:.1f}."
        if summ["mean_wer"] is not None
        else "No set was scored."
    )
    return f"{head}\n\n{table}\n\n{tail}"


def parse_sets(text: str) -> list[tuple[str | None, str]]:
    out = []
    for part in (x.strip() for x in text.split(",") if x.strip()):
        config, sep, split = part.partition(":")
        if not sep or not split:
            raise argparse.ArgumentTypeError(f"--hf-sets entries are CONFIG:SPLIT (CONFIG may be empty), got {part!r}")
        out.append((config or None, split))
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", type=Path, action="append", help="a NeMo manifest with references (repeatable)")
    src.add_argument("--hf-dataset", help=f"a Hugging Face dataset id or local folder, e.g. {DEFAULT_HF_DATASET}")
    ap.add_argument(
        "--hf-sets",
        type=parse_sets,
        default=parse_sets(",".join(LEADERBOARD_SETS)),
        help="CONFIG:SPLIT,... (default: the leaderboard's eight English sets)",
    )
    ap.add_argument(
        "--no-streaming", dest="streaming", action="store_false", help="download each set whole instead of streaming it"
    )
    ap.add_argument("--max-samples", type=int, help="evaluate the first N items of each set")
    ap.add_argument("--url", help="gRPC address of a running server (default: start one here)")
    ap.add_argument("--export-dir", type=Path)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--llm-dir", type=Path)
    ap.add_argument("--skip-parity", action="store_true")
    ap.add_argument("--work-dir", type=Path)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=256, help="items decoded and sent per round")
    ap.add_argument("--max-new-tokens", type=int)
    ap.add_argument("--max-wer", type=float, help="exit 1 if a set's WER (fraction, 0.1 = 10%%) is above this")
    ap.add_argument("--out", type=Path, help="write wer_eval.json / .md and predictions_<set>.jsonl here")
    ap.add_argument(
        "--save-audio",
        type=Path,
        help="also write each set's decoded audio (WAV) and a NeMo manifest "
        "under DIR/<set>/, to feed the other benchmarks the same clips",
    )
    ap.add_argument("--timeout", type=float, default=300.0)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.concurrency < 1 or a.chunk < 1:
        print("error: --concurrency and --chunk must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    if a.manifest:
        sources = [(str(m), lambda m=m: manifest_items(m, a.max_samples)) for m in a.manifest]
    else:
        sources = [
            (
                f"{a.hf_dataset}:{cfg or ''}:{split}",
                lambda cfg=cfg, split=split: hf_items(a.hf_dataset, cfg, split, a.streaming, a.max_samples),
            )
            for cfg, split in a.hf_sets
        ]
    machine = machine_info()
    results = []
    serve = ServeOptions(
        url=a.url,
        export_dir=a.export_dir,
        checkpoint=a.checkpoint,
        llm_dir=a.llm_dir,
        parity=not a.skip_parity,
        work_dir=a.work_dir,
    )
    with served(serve) as target:
        with CanaryClient(
            options=ClientOptions(url=target.grpc_url, timeout_s=a.timeout), concurrency=a.concurrency
        ) as client:
            client.wait_ready()
            for name, items in sources:
                safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[-80:]
                pred = Path(a.out) / f"predictions_{safe}.jsonl" if a.out else None
                if pred is not None:
                    pred.parent.mkdir(parents=True, exist_ok=True)
                audio_dir = Path(a.save_audio) / safe if a.save_audio else None
                results.append(
                    evaluate_set(client, name, items(), a.concurrency, a.chunk, a.max_new_tokens, pred, audio_dir)
                )
    scored = [s for s in results if s["wer"] is not None]
    total_audio, total_wall = sum(s["audio_s"] for s in results), sum(s["wall_s"] for s in results)
    payload = {
        "benchmark": "wer_eval",
        "measured": "pooled WER per set (Whisper English normaliser) and RTFx of the served pipeline",
        "machine": machine,
        "server": {"how": target.how, "url": target.grpc_url},
        "concurrency": a.concurrency,
        "max_new_tokens": a.max_new_tokens,
        "sets": results,
        "summary": {
            "mean_wer": sum(s["wer"] for s in scored) / len(scored) if scored else None,
            "composite_rtfx": total_audio / total_wall if total_wall > 0 else None,
            "audio_h": total_audio / 3600,
        },
    }
    md = render(payload)
    print(md)
    for p in write_outputs(a.out, "wer_eval", payload, md):
        print(f"wrote {p}", file=sys.stderr)
    failed = [e for s in results for e in s["errors"]]
    over = [s["set"] for s in scored if a.max_wer is not None and s["wer"] > a.max_wer]
    if failed or over:
        print(
            f"FAILED: {len(failed)} requests failed{' (first: ' + failed[0] + ')' if failed else ''}; "
            f"sets over --max-wer {a.max_wer}: {', '.join(over) or 'none'}",
            file=sys.stderr,
        )
        return EXIT_WRONG
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
