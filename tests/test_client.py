"""The client library and the `transcribe`/`ask`/`perf-input` commands against the real server."""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import soxr
import tritonclient.http as httpclient

from canary_triton import contract as C
from canary_triton.bundled import DEMO_HELDOUT
from canary_triton.cli import main
from canary_triton.client import AsyncCanaryClient, CanaryClient, ClientOptions, Segment, ServerError, api, as_audio
from canary_triton.client.options import backoff_delays, is_retryable
from canary_triton.client.perf_input import build_perf_input, decode_entry_tensor, validate_perf_input
from canary_triton.evaluation.nemo_manifest import read_manifest
from canary_triton.evaluation.wer import leaderboard_normalize, wer
from canary_triton.serving.tritonserver import free_port


@pytest.fixture(scope="module")
def reference(server_trained):
    """Unary transcripts of the held-out clips (the server's own, checked against NeMo elsewhere)."""
    rows = read_manifest(DEMO_HELDOUT / "manifest.jsonl")
    with CanaryClient(server_trained.grpc_url) as c:
        return {r["audio_filepath"]: c.transcribe(r["audio_filepath"]) for r in rows}


def test_library_accepts_paths_bytes_and_arrays_at_any_rate(server_trained, heldout, tmp_path, oracle_trained):
    audio, text = heldout[3]
    want = oracle_trained.transcribe([audio])[0]
    assert want == text  # a clip the model gets right
    stereo44 = soxr.resample(np.stack([audio, audio], axis=1), 16000, 44100).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo44, 44100, subtype="PCM_16")
    sf.write(tmp_path / "s.ogg", soxr.resample(audio, 16000, 48000), 48000, format="OGG", subtype="OPUS")
    with CanaryClient(server_trained.grpc_url) as c:
        assert c.transcribe(audio) == want
        assert c.transcribe(tmp_path / "s.wav") == want  # 44.1 kHz stereo PCM16, resampled by soxr
        assert c.transcribe((tmp_path / "s.wav").read_bytes()) == want
        assert c.transcribe(stereo44, sample_rate=44100) == want
        assert c.transcribe((np.round(audio * 32767).astype(np.int16), 16000)) == want
        assert c.transcribe(tmp_path / "s.ogg") == text  # lossy Opus at 48 kHz: the words survive
    with CanaryClient(server_trained.http_url, protocol="http") as c:
        assert c.transcribe(tmp_path / "s.wav") == want


def test_concurrency_16_over_64_files_equals_concurrency_1(server_trained, reference):
    files = sorted(reference)[:32] * 2
    with CanaryClient(server_trained.grpc_url) as c:
        one = c.transcribe_many(files, concurrency=1)
        many = c.transcribe_many(files, concurrency=16)
    assert [r.text for r in one] == [reference[f] for f in files]
    assert [r.text for r in many] == [r.text for r in one]
    assert [r.index for r in many] == list(range(64)) and all(r.ok and r.seconds > 0 for r in many)


def test_streaming_concatenates_to_the_unary_transcript_sync_and_async(server_trained, reference):
    files = sorted(reference)[:4]
    with CanaryClient(server_trained.grpc_url) as c:
        for f in files:
            pieces = list(c.stream(f))
            assert len(pieces) >= 2 and "".join(pieces) == reference[f]

    async def run():
        out = []
        async with AsyncCanaryClient(server_trained.grpc_url) as c:
            for f in files:
                out.append([p async for p in c.stream(f)])
        return out

    for f, pieces in zip(files, asyncio.run(run())):
        assert "".join(pieces) == reference[f]


def test_streaming_over_http_is_refused_with_a_reason(server_trained, reference):
    with CanaryClient(server_trained.http_url, protocol="http") as c, pytest.raises(Exception, match="gRPC"):
        list(c.stream(next(iter(reference))))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_asyncio_transcribe_many_and_ask(server_trained, reference, protocol):
    files = sorted(reference)[:12]
    url = server_trained.grpc_url if protocol == "grpc" else server_trained.http_url

    async def run():
        async with AsyncCanaryClient(url, protocol=protocol) as c:
            results = await c.transcribe_many(files + ["/no/such/file.wav"], concurrency=6)
            answer = await c.ask("Repeat the transcript.", results[0].text, max_new_tokens=4)
            return results, answer

    results, answer = asyncio.run(run())
    assert [r.text for r in results[:-1]] == [reference[f] for f in files]
    assert not results[-1].ok and "/no/such/file.wav does not exist" in results[-1].error
    with CanaryClient(server_trained.grpc_url) as c:
        assert answer == c.ask("Repeat the transcript.", results[0].text, max_new_tokens=4)


def _record_sleeps(monkeypatch) -> list[float]:
    """The client's backoff waits, recorded instead of slept (the retry tests then hold on any machine)."""
    waits: list[float] = []
    monkeypatch.setattr(api, "sleep", waits.append)
    return waits


def test_server_errors_carry_the_message_and_are_not_retried(server_trained, monkeypatch):
    waits = _record_sleeps(monkeypatch)
    opts = ClientOptions(url=server_trained.grpc_url, retries=3, backoff_s=5.0)
    with CanaryClient(options=opts) as c, pytest.raises(ServerError, match="at least 160") as e:
        c.transcribe(np.zeros(5, np.float32))
    assert "INVALID_ARG" in e.value.status and not e.value.retryable
    assert waits == []  # a client mistake is reported at once, with no backoff wait


def test_unavailable_is_retried_with_backoff_then_reported(monkeypatch):
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    for protocol in ("grpc", "http"):
        waits = _record_sleeps(monkeypatch)
        opts = ClientOptions(url=url, protocol=protocol, retries=2, backoff_s=0.2, timeout_s=5)
        with CanaryClient(options=opts) as c, pytest.raises(ServerError, match="gave up after 2 retries") as e:
            c.transcribe(np.zeros(1600, np.float32))
        assert e.value.retryable
        assert len(waits) == 2 and 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.4  # full jitter, doubling


def test_retry_policy():
    assert is_retryable("StatusCode.UNAVAILABLE") and is_retryable("503")
    assert is_retryable("StatusCode.INTERNAL", "Exceeds maximum queue size")
    assert not is_retryable("StatusCode.INVALID_ARGUMENT") and not is_retryable("400")
    delays = list(backoff_delays(ClientOptions(retries=6, backoff_s=0.5, max_backoff_s=3.0)))
    assert len(delays) == 6
    caps = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, caps))


def test_transcribe_command_round_trips_a_manifest_with_a_corrupt_file(server_trained, reference, tmp_path, capsys):
    rows = read_manifest(DEMO_HELDOUT / "manifest.jsonl")[:10]
    (tmp_path / "corrupt.flac").write_bytes(b"fLaC\x00\x00\x00\x22 this is not a FLAC stream")
    rows.insert(5, {"audio_filepath": str(tmp_path / "corrupt.flac"), "duration": 1.0, "text": "one two"})
    manifest = tmp_path / "in.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(
        [
            "transcribe",
            "--manifest",
            str(manifest),
            "-o",
            str(tmp_path / "out.jsonl"),
            "--url",
            server_trained.grpc_url,
            "--concurrency",
            "4",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1  # some failed
    assert "corrupt.flac" in err and "10/11 transcribed" in err and "WER" in err
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 11 and "error" in out[5] and "pred_text" not in out[5]
    good = out[:5] + out[6:]
    assert [o["pred_text"] for o in good] == [reference[r["audio_filepath"]] for r in rows[:5] + rows[6:]]
    assert all(o["wer"] == (0.0 if o["pred_text"] == o["text"] else o["wer"]) for o in good)

    pooled = wer([o["text"] for o in good], [o["pred_text"] for o in good], normalize=leaderboard_normalize)
    assert f"WER {100 * pooled:.2f}%" in err


def test_transcribe_command_files_globs_folders_and_formats(server_trained, reference, tmp_path, capsys):
    files = sorted(reference)[:3]
    folder = tmp_path / "audio"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder)
    rc = main(["transcribe", str(folder), "--url", server_trained.grpc_url, "--no-progress", "--format", "jsonl"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["pred_text"] for x in lines] == [reference[f] for f in files]
    rc = main(["transcribe", str(folder / "*.flac"), "--url", server_trained.grpc_url, "--stream"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and [line.split("\t")[1] for line in out] == [reference[f] for f in files]
    assert main(["transcribe", str(tmp_path / "*.mp3"), "--url", server_trained.grpc_url]) == 2
    assert "matches no audio file" in capsys.readouterr().err


def test_ask_and_summarize_commands(server_random, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("the meeting moved to friday")
    with CanaryClient(server_random.grpc_url) as c:
        want = c.ask("Who?", "the meeting moved to friday", max_new_tokens=6)
        want_summary = c.summarize("the meeting moved to friday", max_new_tokens=6)
    assert (
        main(
            [
                "ask",
                "Who?",
                "--transcript",
                str(tmp_path / "t.txt"),
                "--url",
                server_random.grpc_url,
                "--max-new-tokens",
                "6",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == want + "\n"
    assert (
        main(
            [
                "summarize",
                "--transcript",
                str(tmp_path / "t.txt"),
                "--url",
                server_random.http_url,
                "--protocol",
                "http",
                "--max-new-tokens",
                "6",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == want_summary + "\n"


def test_perf_input_validates_against_the_served_model(server_trained, reference, tmp_path):
    files = sorted(reference)[:3]
    assert main(["perf-input", *files, "-o", str(tmp_path / "in.json"), "--max-new-tokens", "64"]) == 0
    data = json.loads((tmp_path / "in.json").read_text())
    c = httpclient.InferenceServerClient(server_trained.http_url)
    meta, config = c.get_model_metadata(C.ENSEMBLE_MODEL), c.get_model_config(C.ENSEMBLE_MODEL)
    assert validate_perf_input(data, meta, config) == []
    # the samples perf_analyzer will send are the client's, bit for bit
    with CanaryClient(server_trained.grpc_url) as client:
        for f, entry in zip(files, data["data"]):
            np.testing.assert_array_equal(decode_entry_tensor(entry["audio"], "FP32"), as_audio(f).samples)
            assert client.transcribe(decode_entry_tensor(entry["audio"], "FP32")) == reference[f]
    bad = build_perf_input(files[:1])
    bad["data"][0]["speech"] = bad["data"][0].pop("audio")
    problems = validate_perf_input(bad, meta, config)
    assert any("no input 'speech'" in p for p in problems) and any("'audio' is missing" in p for p in problems)


def test_async_client_has_every_call_of_the_sync_client_with_the_same_parameters():
    public = {n for n in dir(CanaryClient) if not n.startswith("_") and callable(getattr(CanaryClient, n))}
    assert public <= set(dir(AsyncCanaryClient))
    for name in sorted(public - {"close"}):
        sync_params = list(inspect.signature(getattr(CanaryClient, name)).parameters)
        async_fn = getattr(AsyncCanaryClient, name)
        assert list(inspect.signature(async_fn).parameters) == sync_params, name
        assert inspect.iscoroutinefunction(async_fn) or inspect.isasyncgenfunction(async_fn), name


def test_async_summarize_transcribe_and_ask_and_segments_equal_the_sync_calls(server_trained, reference):
    f = sorted(reference)[5]

    async def run():
        async with AsyncCanaryClient(server_trained.grpc_url) as c:
            await c.wait_ready(60)
            return (
                await c.summarize(reference[f], max_new_tokens=6),
                await c.transcribe_and_ask(f, "Repeat the text.", max_new_tokens=6),
                await c.transcribe_segments(f),
            )

    summary, (transcript, answer), segments = asyncio.run(run())
    with CanaryClient(server_trained.grpc_url) as c:
        assert summary == c.summarize(reference[f], max_new_tokens=6)
        assert (transcript, answer) == c.transcribe_and_ask(f, "Repeat the text.", max_new_tokens=6)
        assert segments == c.transcribe_segments(f)
    assert transcript == reference[f]
    assert all(isinstance(s, Segment) for s in segments)
    assert "".join(s.text for s in segments).strip() == reference[f].strip()
