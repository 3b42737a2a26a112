"""canary_triton/client/commands.py without a server: ``canary-triton transcribe | ask | summarize |
perf-input`` parsed by the real command line, with the network client replaced by a recording
fake (what each command sends, prints, writes and exits with); the progress line and SubRip
formatting. The same commands against a served model are in test_client.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from canary_triton import contract as C
from canary_triton.client import commands
from canary_triton.client.calls import Result
from canary_triton.client.perf_input import decode_entry_tensor
from canary_triton.evaluation.nemo_manifest import read_manifest
from canary_triton.longform.segment import Segment

from .conftest import cli_in_process, speechlike


class FakeClient:
    """What commands.py calls of CanaryClient; answers from ``texts`` (None: that item fails)."""

    made: list["FakeClient"] = []
    texts: dict[str, str | None] = {}

    def __init__(self, url=None, protocol=None, options=None, concurrency=8):
        self.options, self.concurrency, self.calls = options, concurrency, []
        FakeClient.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def _text(self, audio) -> str:
        text = self.texts[Path(audio).name]
        if text is None:
            raise RuntimeError(f"the server refused {Path(audio).name}")
        return text

    def transcribe_many(self, paths, concurrency, max_new_tokens, on_result):
        self.calls.append(("transcribe_many", [Path(p).name for p in paths], concurrency, max_new_tokens))
        results = []
        for i, p in enumerate(paths):
            text = self.texts[Path(p).name]
            r = Result(i, str(p), 2.0 + i, text=text, error=None if text is not None else "INVALID_ARG: too long")
            on_result(r)
            results.append(r)
        return results

    def transcribe_segments(self, path, max_new_tokens=None):
        self.calls.append(("transcribe_segments", Path(path).name, max_new_tokens))
        return [
            Segment(0.0, 1.25, self._text(path)),
            Segment(1.25, 2.0, "  "),  # no words: no block
            Segment(2.0, 3661.5, "later"),
        ]

    def stream(self, path, max_new_tokens=None):
        self.calls.append(("stream", Path(path).name, max_new_tokens))
        words = self._text(path).split()
        yield words[0]
        for w in words[1:]:
            yield " " + w

    def transcribe(self, audio):
        self.calls.append(("transcribe", Path(audio).name))
        return self._text(audio)

    def transcribe_and_ask(self, audio, instruction, max_new_tokens=None):
        self.calls.append(("transcribe_and_ask", Path(audio).name, instruction, max_new_tokens))
        return self._text(audio), f"answer to {instruction}"

    def ask(self, instruction, transcript, max_new_tokens=None, temperature=None, top_p=None, seed=None):
        self.calls.append(("ask", instruction, transcript, max_new_tokens, temperature, top_p, seed))
        return f"answer to {instruction}"


@pytest.fixture
def fake(monkeypatch):
    FakeClient.made, FakeClient.texts = [], {}
    monkeypatch.setattr(commands, "CanaryClient", FakeClient)
    return FakeClient


@pytest.fixture
def clips(tmp_path):
    paths = []
    for name in ("a.wav", "b.wav", "c.wav"):
        paths.append(tmp_path / name)
        sf.write(str(paths[-1]), speechlike(0.3, len(paths)), 16000)
    return paths


# -- transcribe -----------------------------------------------------------------------------------
def test_transcribe_prints_a_line_per_file_and_reports_failures_on_stderr(fake, clips):
    fake.texts = {"a.wav": "hello there", "b.wav": None, "c.wav": "bye"}
    r = cli_in_process("transcribe", *map(str, clips), "--no-progress", "--concurrency", "3", "--max-new-tokens", "40")
    assert r.returncode == 1  # some items failed, the others done
    assert r.stdout == f"{clips[0]}\thello there\n{clips[2]}\tbye\n"
    assert r.stderr == f"error: {clips[1]}: INVALID_ARG: too long\n"  # --no-progress: no progress, no summary
    (client,) = fake.made
    assert client.calls == [("transcribe_many", ["a.wav", "b.wav", "c.wav"], 3, 40)] and client.concurrency == 3
    o = client.options
    assert (o.url, o.protocol, o.model, o.timeout_s, o.retries) == (
        "127.0.0.1:8001",
        "grpc",
        C.ENSEMBLE_MODEL,
        120.0,
        4,
    )


def test_the_connection_options_reach_the_client(fake, clips):
    fake.texts = {"a.wav": "x"}
    args = ("transcribe", str(clips[0]), "--no-progress", "--protocol", "http", "--timeout", "5", "--retries", "0")
    assert cli_in_process(*args).returncode == 0
    o = fake.made[-1].options
    assert (o.url, o.protocol, o.timeout_s, o.retries) == ("127.0.0.1:8000", "http", 5.0, 0)
    assert cli_in_process(*args, "--url", "gpu-box:9000").returncode == 0
    assert fake.made[-1].options.url == "gpu-box:9000"


def test_a_manifest_in_gives_a_scored_manifest_out(fake, clips, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"audio_filepath": "a.wav", "duration": 0.3, "text": "Hello there!"})
        + "\n"
        + json.dumps({"audio_filepath": "b.wav", "text": "two words"})
        + "\n"
        + json.dumps({"audio_filepath": "c.wav", "speaker": 7})
        + "\n"
    )
    fake.texts = {"a.wav": "hello there", "b.wav": "two birds", "c.wav": "no reference"}
    out = tmp_path / "out" / "pred.jsonl"
    r = cli_in_process("transcribe", "--manifest", str(src), "-o", str(out), "--no-progress")
    assert r.returncode == 0 and r.stdout == ""
    rows = read_manifest(out)
    assert [row["pred_text"] for row in rows] == ["hello there", "two birds", "no reference"]
    assert rows[0]["duration"] == 0.3 and rows[1]["duration"] == 3.0  # the input's kept, else the audio's
    assert rows[0]["wer"] == 0.0 and rows[1]["wer"] == 0.5 and "wer" not in rows[2]  # Whisper-normalised
    assert rows[2]["speaker"] == 7 and rows[0]["audio_filepath"] == str(tmp_path / "a.wav")
    (summary,) = r.stderr.splitlines()  # with -o the summary is printed even with --no-progress; 2+3+4 s of audio
    assert summary.startswith("3/3 transcribed, 0.0025 h audio in ")
    assert summary.endswith(
        "concurrency 8, grpc 127.0.0.1:8001); WER 25.00% over 2 references (Whisper English normaliser)"
    )


def test_a_failed_item_keeps_its_row_with_the_error(fake, clips, tmp_path):
    fake.texts = {"a.wav": "fine", "b.wav": None}
    out = tmp_path / "o.jsonl"
    r = cli_in_process("transcribe", str(clips[0]), str(clips[1]), "-o", str(out), "--no-progress")
    assert r.returncode == 1
    rows = read_manifest(out)
    assert rows[0]["pred_text"] == "fine" and rows[1]["error"] == "INVALID_ARG: too long" and "pred_text" not in rows[1]
    assert r.stderr.splitlines()[0] == f"error: {clips[1]}: INVALID_ARG: too long"
    assert r.stderr.splitlines()[1].startswith("1/2 transcribed")


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_formats_print_the_rows(fake, clips, fmt):
    fake.texts = {"a.wav": "un", "b.wav": "deux"}
    r = cli_in_process("transcribe", str(clips[0]), str(clips[1]), "--format", fmt, "--no-progress")
    rows = json.loads(r.stdout) if fmt == "json" else [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0
    assert rows == [
        {"audio_filepath": str(clips[0]), "duration": 2.0, "pred_text": "un"},
        {"audio_filepath": str(clips[1]), "duration": 3.0, "pred_text": "deux"},
    ]


def test_srt_prints_a_numbered_block_per_timed_segment(fake, clips):
    fake.texts = {"a.wav": "first words", "b.wav": None, "c.wav": "more"}
    r = cli_in_process("transcribe", *map(str, clips), "--format", "srt", "--max-new-tokens", "16")
    assert r.returncode == 1 and r.stderr == f"error: {clips[1]}: the server refused b.wav\n"
    block = "1\n00:00:00,000 --> 00:00:01,250\n{}\n\n2\n00:00:02,000 --> 01:01:01,500\nlater\n\n"
    assert r.stdout == f"# {clips[0]}\n" + block.format("first words") + f"# {clips[2]}\n" + block.format("more")
    assert fake.made[0].calls[0] == ("transcribe_segments", "a.wav", 16)


def test_vtt_prints_a_cue_per_timed_segment(fake, clips):
    fake.texts = {"a.wav": "first words"}
    r = cli_in_process("transcribe", str(clips[0]), "--format", "vtt", "--no-progress")
    assert r.returncode == 0
    assert (
        r.stdout == "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nfirst words\n\n00:00:02.000 --> 01:01:01.500\nlater\n\n"
    )
    assert fake.made[0].calls[0] == ("transcribe_segments", "a.wav", None)


def test_one_file_in_srt_has_no_header(fake, clips):
    fake.texts = {"a.wav": "only"}
    r = cli_in_process("transcribe", str(clips[0]), "--format", "srt")
    assert r.returncode == 0 and r.stdout.startswith("1\n00:00:00,000 --> 00:00:01,250\nonly\n\n")


def test_stream_prints_the_pieces_as_they_come_and_goes_on_after_a_failure(fake, clips):
    fake.texts = {"a.wav": "one two three", "b.wav": None, "c.wav": "four"}
    r = cli_in_process("transcribe", *map(str, clips), "--stream")
    assert r.returncode == 1
    assert r.stdout == f"{clips[0]}\tone two three\n{clips[1]}\t\n{clips[2]}\tfour\n"
    assert r.stderr == f"error: {clips[1]}: the server refused b.wav\n"


def test_no_input_and_bad_options_are_usage_errors(fake, tmp_path):
    r = cli_in_process("transcribe")
    assert r.returncode == 2 and r.stderr == "error: give audio files, globs or folders, or --manifest FILE\n"
    r = cli_in_process("transcribe", str(tmp_path / "*.wav"))
    assert r.returncode == 2 and r.stderr == f"error: {tmp_path / '*.wav'} matches no audio file\n"
    r = cli_in_process("transcribe", "x.wav", "--concurrency", "0")
    assert r.returncode == 2 and "--concurrency: must be >= 1, got 0" in r.stderr
    r = cli_in_process("transcribe", "x.wav", "--max-new-tokens", str(C.MAX_NEW_TOKENS_LIMIT + 1))
    assert r.returncode == 2 and "--max-new-tokens" in r.stderr
    assert fake.made == []  # nothing was sent


# -- ask / summarize ------------------------------------------------------------------------------
def test_ask_about_audio_is_one_call_to_the_ask_model(fake, clips):
    fake.texts = {"a.wav": "turn on the light"}
    r = cli_in_process("ask", "What is asked?", "--audio", str(clips[0]), "--show-transcript", "--max-new-tokens", "20")
    assert r.returncode == 0 and r.stdout == "transcript: turn on the light\nanswer to What is asked?\n"
    (client,) = fake.made
    assert client.options.model == C.LLM_MODE_MODEL
    assert client.calls == [("transcribe_and_ask", "a.wav", "What is asked?", 20)]


def test_sampling_transcribes_first_then_asks_with_the_sampling_options(fake, clips):
    fake.texts = {"a.wav": "turn on the light"}
    r = cli_in_process("ask", "Why?", "--audio", str(clips[0]), "--temperature", "0.7", "--top-p", "0.9", "--seed", "3")
    assert r.returncode == 0 and r.stdout == "answer to Why?\n"
    asr, llm = fake.made
    assert asr.options.model == C.ENSEMBLE_MODEL and asr.calls == [("transcribe", "a.wav")]
    assert llm.options.model == C.LLM_MODE_MODEL
    assert llm.calls == [("ask", "Why?", "turn on the light", None, 0.7, 0.9, 3)]


def test_summarize_a_transcript_file_and_ask_without_context(fake, tmp_path):
    t = tmp_path / "t.txt"
    t.write_text("a long meeting about lights", encoding="utf-8")
    r = cli_in_process("summarize", "--transcript", str(t), "--show-transcript")
    assert r.returncode == 0
    assert r.stdout == f"transcript: a long meeting about lights\nanswer to {C.SUMMARIZE_INSTRUCTION}\n"
    assert fake.made[0].calls == [
        ("ask", C.SUMMARIZE_INSTRUCTION, "a long meeting about lights", None, None, None, None)
    ]
    r = cli_in_process("ask", "Tell me a joke")
    assert r.returncode == 0 and fake.made[-1].calls == [("ask", "Tell me a joke", None, None, None, None, None)]


def test_a_missing_transcript_file_is_a_usage_error(fake, tmp_path):
    r = cli_in_process("summarize", "--transcript", str(tmp_path / "none.txt"))
    assert r.returncode == 2 and r.stderr == f"error: transcript file {tmp_path / 'none.txt'} does not exist\n"
    assert all(c.calls == [] for c in fake.made)


# -- perf-input -----------------------------------------------------------------------------------
def test_perf_input_writes_the_json_and_says_where(clips, tmp_path):
    out = tmp_path / "pa" / "input.json"
    r = cli_in_process("perf-input", str(clips[0]), str(clips[1]), "-o", str(out), "--max-new-tokens", "64")
    assert r.returncode == 0 and r.stderr == f"wrote {out}\n"
    data = json.loads(out.read_text())["data"]
    assert [e["max_new_tokens"]["content"] for e in data] == [[64], [64]]
    want, _ = sf.read(str(clips[1]), dtype="float32")
    np.testing.assert_array_equal(decode_entry_tensor(data[1]["audio"], "FP32"), want)


# -- progress and SubRip --------------------------------------------------------------------------
class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _results(n_ok: int, n_failed: int) -> list[Result]:
    ok = [Result(i, f"f{i}", 1800.0, text="t") for i in range(n_ok)]
    return ok + [Result(n_ok + i, "bad", 0.0, error="e") for i in range(n_failed)]


def test_progress_in_a_log_is_one_line_at_the_end():
    stream = io.StringIO()
    p = commands.Progress(3, stream=stream)
    for r in _results(2, 1):
        p.update(r)
    p.finish()
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("3/3 files, 1.000 h audio, RTFx ") and line.endswith(", 1 failed")
    assert (p.done, p.failed, p.audio_s) == (3, 1, 3600.0)


def test_progress_on_a_terminal_rewrites_its_line_and_ends_it():
    stream = Tty()
    p = commands.Progress(2, stream=stream)
    for r in _results(2, 0):
        p.update(r)
    p.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith(" 0 failed\n") and "\r1/2 files, 0.500 h audio" in text


def test_disabled_progress_writes_nothing_but_still_counts():
    stream = Tty()
    p = commands.Progress(1, stream=stream, enabled=False)
    p.update(_results(1, 0)[0])
    p.finish()
    assert stream.getvalue() == "" and p.done == 1 and p.rtfx > 0
