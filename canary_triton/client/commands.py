"""``canary-triton transcribe | ask | summarize | perf-input``: the client side of the command line.

Exit codes: 0 every item succeeded; 1 some items failed (each reported on stderr, the others
done); 2 a usage error before anything was sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from canary_triton import contract as C
from canary_triton.client.api import CanaryClient
from canary_triton.client.audio_input import expand_paths
from canary_triton.client.calls import Result
from canary_triton.client.options import ClientOptions
from canary_triton.client.perf_input import MODES, write_perf_input
from canary_triton.errors import InputError
from canary_triton.evaluation.nemo_manifest import (
    AUDIO_KEY,
    DURATION_KEY,
    PRED_KEY,
    TEXT_KEY,
    WER_KEY,
    read_manifest,
    write_manifest,
)
from canary_triton.evaluation.wer import leaderboard_normalize, wer
from canary_triton.longform import formats

#: ``--format`` values written from timed segments (the rest print the manifest rows).
SUBTITLE_FORMATS = {"srt": formats.srt, "vtt": formats.vtt}


def _options(args: argparse.Namespace, model: str = C.ENSEMBLE_MODEL) -> ClientOptions:
    url = args.url or ("127.0.0.1:8001" if args.protocol == "grpc" else "127.0.0.1:8000")
    return ClientOptions(url=url, protocol=args.protocol, model=model, timeout_s=args.timeout, retries=args.retries)


class Progress:
    """One status line on stderr: files done, audio hours, RTFx (audio seconds / wall seconds)."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True):
        self.total, self.stream, self.enabled = total, stream or sys.stderr, enabled
        self.done = self.failed = 0
        self.audio_s = 0.0
        self.t0 = time.perf_counter()
        self._tty = self.stream.isatty()
        self._last = self.t0

    @property
    def rtfx(self) -> float:
        return self.audio_s / max(time.perf_counter() - self.t0, 1e-9)

    def line(self) -> str:
        return (
            f"{self.done}/{self.total} files, {self.audio_s / 3600:.3f} h audio, RTFx {self.rtfx:.1f}, "
            f"{self.failed} failed"
        )

    def update(self, r: Result) -> None:
        self.done += 1
        self.failed += not r.ok
        self.audio_s += r.seconds
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._tty:
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif now - self._last >= 10 or self.done == self.total:  # logs: one line per 10 s
            self.stream.write(self.line() + "\n")
            self._last = now

    def finish(self) -> None:
        if self.enabled and self._tty:
            self.stream.write("\n")


def _wer_of(ref: str, hyp: str) -> float:
    return wer([ref], [hyp], normalize=leaderboard_normalize)


def cmd_transcribe(args: argparse.Namespace) -> int:
    if args.manifest:
        rows = read_manifest(args.manifest)
    elif args.inputs:
        rows = [{AUDIO_KEY: str(p)} for p in expand_paths(args.inputs)]
    else:
        raise InputError("give audio files, globs or folders, or --manifest FILE")
    paths = [r[AUDIO_KEY] for r in rows]
    opts = _options(args)
    out: TextIO = sys.stdout
    with CanaryClient(options=opts, concurrency=args.concurrency) as client:
        if args.stream:
            return _stream_files(client, paths, args)
        if args.format in SUBTITLE_FORMATS:
            return _subtitle_files(client, paths, args)
        progress = Progress(len(paths), enabled=not args.no_progress)
        results = client.transcribe_many(
            paths, concurrency=args.concurrency, max_new_tokens=args.max_new_tokens, on_result=progress.update
        )
        progress.finish()
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"error: {r.name}: {r.error}", file=sys.stderr)
    out_rows = []
    for row, r in zip(rows, results):
        row = dict(row)
        row.setdefault(DURATION_KEY, round(r.seconds, 4))
        if r.ok:
            row[PRED_KEY] = r.text
            if isinstance(row.get(TEXT_KEY), str):
                row[WER_KEY] = round(_wer_of(row[TEXT_KEY], r.text), 4)
        else:
            row["error"] = r.error
        out_rows.append(row)
    scored = [row for row in out_rows if PRED_KEY in row and isinstance(row.get(TEXT_KEY), str)]
    if args.output:
        write_manifest(args.output, out_rows)
    else:
        _print(out_rows, args.format, out)
    ok = [r for r in results if r.ok]
    wall = time.perf_counter() - progress.t0
    summary = (
        f"{len(ok)}/{len(results)} transcribed, {sum(r.seconds for r in ok) / 3600:.4f} h audio "
        f"in {wall:.1f} s (RTFx {sum(r.seconds for r in ok) / max(wall, 1e-9):.1f}, "
        f"concurrency {args.concurrency}, {opts.protocol} {opts.url})"
    )
    if scored:
        pooled = wer([r[TEXT_KEY] for r in scored], [r[PRED_KEY] for r in scored], normalize=leaderboard_normalize)
        summary += f"; WER {100 * pooled:.2f}% over {len(scored)} references (Whisper English normaliser)"
    if not args.no_progress or args.output:
        print(summary, file=sys.stderr)
    return 1 if failed else 0


def _print(rows: list[dict], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        json.dump(rows, out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        for row in rows:
            if PRED_KEY in row:
                out.write(f"{row[AUDIO_KEY]}\t{row[PRED_KEY]}\n")


def _subtitle_files(client: CanaryClient, paths: list[str], args: argparse.Namespace) -> int:
    """``--format srt|vtt``: each file's timed segments (the long-form entry point) as subtitles."""
    failed = 0
    for p in paths:
        try:
            segments = client.transcribe_segments(p, max_new_tokens=args.max_new_tokens)
        except Exception as e:  # noqa: BLE001  report it, go on with the next file
            print(f"error: {p}: {e}", file=sys.stderr)
            failed += 1
            continue
        if len(paths) > 1:
            print(f"# {p}")
        print(SUBTITLE_FORMATS[args.format](segments), end="")
    return 1 if failed else 0


def _stream_files(client: CanaryClient, paths: list[str], args: argparse.Namespace) -> int:
    failed = 0
    for p in paths:
        print(f"{p}\t", end="", flush=True)
        try:
            for piece in client.stream(p, max_new_tokens=args.max_new_tokens):
                print(piece, end="", flush=True)
            print(flush=True)
        except Exception as e:  # noqa: BLE001  report it, go on with the next file
            print(flush=True)
            print(f"error: {p}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _transcript_of(args: argparse.Namespace, client_opts: ClientOptions) -> str:
    if args.transcript:
        path = Path(args.transcript)
        if not path.is_file():
            raise InputError(f"transcript file {path} does not exist")
        return path.read_text(encoding="utf-8")
    if args.audio:
        asr = ClientOptions(**{**client_opts.__dict__, "model": C.ENSEMBLE_MODEL})
        with CanaryClient(options=asr, concurrency=1) as c:
            return c.transcribe(args.audio)
    raise InputError("give --transcript FILE or --audio FILE")


def cmd_ask(args: argparse.Namespace) -> int:
    opts = _options(args, C.LLM_MODE_MODEL)
    instruction = C.SUMMARIZE_INSTRUCTION if args.command == "summarize" else args.instruction
    sampling = args.temperature is not None or args.top_p is not None or args.seed is not None
    if args.audio and not args.transcript and not sampling:  # one call: canary_qwen_ask
        with CanaryClient(options=opts, concurrency=1) as c:
            transcript, answer = c.transcribe_and_ask(args.audio, instruction, max_new_tokens=args.max_new_tokens)
        if args.show_transcript:
            print(f"transcript: {transcript}")
        print(answer)
        return 0
    transcript = _transcript_of(args, opts) if (args.transcript or args.audio) else None
    with CanaryClient(options=opts, concurrency=1) as c:
        answer = c.ask(
            instruction,
            transcript,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
        )
    if args.show_transcript and transcript is not None:
        print(f"transcript: {transcript}")
    print(answer)
    return 0


def cmd_perf_input(args: argparse.Namespace) -> int:
    files = expand_paths(args.inputs) if args.mode != "llm" else args.inputs
    path = write_perf_input(
        files, args.output, max_new_tokens=args.max_new_tokens, mode=args.mode, instruction=args.instruction
    )
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="host:port (default 127.0.0.1:8001 for grpc, :8000 for http)")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request attempt")
    p.add_argument("--retries", type=int, default=4, help="retries on UNAVAILABLE (queue full, not ready)")


def register(add: Callable[..., argparse.ArgumentParser], max_new_tokens_type: Callable[[str], int]) -> None:
    p = add(
        "transcribe",
        cmd_transcribe,
        "Transcribe audio files (WAV/FLAC/OGG/Opus/MP3, any rate) or a NeMo manifest through a running server.",
    )
    p.add_argument("inputs", nargs="*", help="files, globs (quote them; ** recurses) or folders")
    p.add_argument("--manifest", help="NeMo manifest (jsonl with audio_filepath, duration, optional text)")
    p.add_argument("--output", "-o", help="write the output manifest here (input rows + pred_text, wer)")
    p.add_argument(
        "--format",
        choices=["text", "json", "jsonl", *SUBTITLE_FORMATS],
        default="text",
        help="stdout format without -o; srt, vtt: subtitles of timed segments from the long-form entry point",
    )
    p.add_argument("--stream", action="store_true", help="print partial text as it comes (gRPC)")
    p.add_argument("--concurrency", type=_positive, default=8, help="requests in flight")
    p.add_argument("--max-new-tokens", type=max_new_tokens_type, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress line and summary on stderr")
    _connection_args(p)

    for name, help_ in (
        ("ask", "LLM mode: answer an instruction, optionally about a transcript or an audio file."),
        ("summarize", "LLM mode: summarise a transcript file or an audio file (transcribed first)."),
    ):
        p = add(name, cmd_ask, help_)
        if name == "ask":
            p.add_argument("instruction")
        p.add_argument("--transcript", help="a text file holding the transcript")
        p.add_argument("--audio", help="an audio file: transcribe it first, then ask about it")
        p.add_argument("--show-transcript", action="store_true")
        p.add_argument("--max-new-tokens", type=max_new_tokens_type, default=None)
        p.add_argument("--temperature", type=float, default=None, help="default: greedy")
        p.add_argument("--top-p", type=float, default=None)
        p.add_argument("--seed", type=int, default=None)
        _connection_args(p)

    p = add(
        "perf-input",
        cmd_perf_input,
        "Write perf_analyzer's --input-data JSON: audio files for the ASR entry points (--mode asr), "
        "text files for LLM mode (--mode llm), audio files plus an instruction for canary_qwen_ask (--mode ask).",
    )
    p.add_argument("inputs", nargs="+")
    p.add_argument("--output", "-o", required=True)
    p.add_argument(
        "--mode",
        choices=tuple(MODES),
        default="asr",
        help="; ".join(f"{m}: {what} for {', '.join(models)}" for m, (what, models) in MODES.items()),
    )
    p.add_argument(
        "--instruction",
        default=C.SUMMARIZE_INSTRUCTION,
        help="the LLM-mode instruction (--mode llm, ask); default: the summary instruction",
    )
    p.add_argument("--max-new-tokens", type=max_new_tokens_type, default=None)


CLIENT_COMMANDS = ("transcribe", "ask", "summarize", "perf-input")
