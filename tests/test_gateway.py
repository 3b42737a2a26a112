"""The OpenAI-compatible gateway (canary_triton/gateway) against the real server, with the
official ``openai`` package as the client: transcripts equal ``CanaryClient.transcribe`` in every
response_format, streamed deltas join to the final text, long-form audio goes through the same
call, chat completions equal ``CanaryClient.ask``; errors in OpenAI's shape with the service
still serving after each; the in-flight bound; a client that disconnects cancels its request.

The gateway runs on uvicorn in a thread of the test process. Nothing here waits on a sleep or a
timing: conditions (a metric, the gateway's in-flight count) are polled with a deadline."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr

from canary_triton import contract as C
from canary_triton.bundled import DEMO_HELDOUT
from canary_triton.cli import main
from canary_triton.client import CanaryClient
from canary_triton.evaluation.nemo_manifest import read_manifest
from canary_triton.gateway import BackgroundGateway, GatewayOptions
from canary_triton.gateway.asgi import Gate, Load
from canary_triton.gateway.chat import parse_chat
from canary_triton.gateway.formats import render
from canary_triton.gateway.openai_errors import GatewayError
from canary_triton.longform.segment import Segment
from canary_triton.serving.tritonserver import free_port

from .conftest import LONG_GENERATION_TOKENS, SR
from .test_reliability import _llm_metric, _wait_for, assert_cancelled_early, llm_counters

KEY = "gateway-test-key"
MODEL = GatewayOptions().model_name
UPLOAD_LIMIT = 4 * 2**20  # the long-form recording below is ~1.8 MiB of 16-bit WAV
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway(server_trained):
    opts = GatewayOptions(
        triton_url=server_trained.grpc_url, port=free_port(), api_key=KEY, max_upload_bytes=UPLOAD_LIMIT
    )
    with BackgroundGateway(opts) as gw:
        yield gw


@pytest.fixture(scope="module")
def oai(gateway):
    import openai  # here, not at the top: 1 s of import that the unserved run does not need

    with openai.OpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    return [Path(r["audio_filepath"]) for r in read_manifest(DEMO_HELDOUT / "manifest.jsonl")]


@pytest.fixture(scope="module")
def reference(server_trained, clips) -> dict[Path, str]:
    with CanaryClient(server_trained.grpc_url) as c:
        return {p: c.transcribe(p) for p in clips}


@pytest.fixture(scope="module")
def long_recording(clips) -> bytes:
    """Over the model's 40 s: held-out clips joined with 0.6-1.0 s pauses, as a 16-bit WAV."""
    parts, total = [], 0.0
    rng = np.random.default_rng(3)
    for p in clips:
        x, sr = sf.read(p, dtype="float32")
        assert sr == SR
        parts += [x, np.zeros(int(rng.uniform(0.6, 1.0) * SR), np.float32)]
        total += (len(x) + len(parts[-1])) / SR
        if total > C.MAX_AUDIO_SECONDS + 8:
            break
    buf = io.BytesIO()
    sf.write(buf, np.concatenate(parts), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _transcribe(oai, audio, name: str = "clip.flac", **kwargs):
    return oai.audio.transcriptions.create(model=MODEL, file=(name, audio), **kwargs)


def _cue_texts(body: str) -> list[str]:
    """The text lines of SubRip / WebVTT cues (not numbers, not timings, not the header)."""
    out = []
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        if lines[0] == "WEBVTT":
            continue
        timing = next(i for i, line in enumerate(lines) if "-->" in line)
        out.append("\n".join(lines[timing + 1 :]))
    return out


def _check_format(fmt: str, answer, expected: str, seconds: float) -> None:
    if fmt == "json":
        assert answer.text == expected
    elif fmt == "text":
        assert answer == expected
    elif fmt == "verbose_json":
        assert answer.text == expected and answer.language == "english"
        assert abs(answer.duration - seconds) < 1e-3
        assert [s.text for s in answer.segments] == ([expected] if expected.strip() else [])
        assert all(s.start == 0.0 and abs(s.end - seconds) < 1e-3 for s in answer.segments)
    else:
        assert " ".join(_cue_texts(answer)) == expected
        assert answer.startswith("WEBVTT\n\n") if fmt == "vtt" else answer.startswith("1\n00:00:00,000 --> ")


# -- transcriptions ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_transcripts_equal_the_client_in_every_response_format(oai, clips, reference, fmt):
    def one(p: Path):
        answer = _transcribe(oai, p.read_bytes(), p.name, response_format=fmt)
        _check_format(fmt, answer, reference[p], sf.info(p).frames / SR)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, clips))


def test_stream_deltas_join_to_the_final_text(oai, clips, reference):
    def one(p: Path):
        events = list(_transcribe(oai, p.read_bytes(), p.name, stream=True))
        assert [e.type for e in events] == ["transcript.text.delta"] * (len(events) - 1) + ["transcript.text.done"]
        assert "".join(e.delta for e in events[:-1]) == events[-1].text == reference[p]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, clips))


def test_other_formats_and_rates_decode_like_the_client(oai, server_trained, clips):
    """An upload in another container and rate (OGG/Vorbis, 44.1 kHz stereo WAV) gives the same text
    as the client given the same bytes."""
    x, _ = sf.read(clips[0], dtype="float32")
    uploads = {}
    for name, fmt, rate, subtype in (("c.ogg", "OGG", SR, "VORBIS"), ("c.wav", "WAV", 44100, "PCM_16")):
        y = soxr.resample(x, SR, rate) if rate != SR else x
        buf = io.BytesIO()
        sf.write(buf, np.stack([y, y], axis=1) if rate != SR else y, rate, format=fmt, subtype=subtype)
        uploads[name] = buf.getvalue()
    with CanaryClient(server_trained.grpc_url) as c:
        for name, raw in uploads.items():
            assert _transcribe(oai, raw, name).text == c.transcribe(raw)


def test_long_form_audio_goes_through_the_same_call(oai, server_trained, long_recording):
    seconds = sf.info(io.BytesIO(long_recording)).duration
    assert seconds > C.MAX_AUDIO_SECONDS
    with CanaryClient(server_trained.grpc_url) as c:
        expected = c.transcribe(long_recording)
        segments = c.transcribe_segments(long_recording)
    assert len(segments) > 1 and expected
    assert _transcribe(oai, long_recording, "long.wav").text == expected
    assert _transcribe(oai, long_recording, "long.wav", response_format="text") == expected
    verbose = _transcribe(
        oai, long_recording, "long.wav", response_format="verbose_json", timestamp_granularities=["segment"]
    )
    assert verbose.text == expected and abs(verbose.duration - seconds) < 1e-3
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [(s.start, s.end, s.text) for s in segments]
    assert [s.id for s in verbose.segments] == list(range(len(segments)))
    assert all(0 <= s.start < s.end <= seconds + 1e-3 for s in verbose.segments)
    starts = [s.start for s in verbose.segments]
    assert starts == sorted(starts)
    for fmt in ("srt", "vtt"):
        cues = _cue_texts(_transcribe(oai, long_recording, "long.wav", response_format=fmt))
        assert cues == [s.text for s in segments if s.text.strip()]
        assert " ".join(cues).split() == expected.split()  # pauses everywhere: no overlap was dropped
    events = list(_transcribe(oai, long_recording, "long.wav", stream=True))
    assert events[-1].type == "transcript.text.done" and events[-1].text == expected
    assert "".join(e.delta for e in events[:-1]) == expected and len(events) > 2  # one delta per segment


# -- chat completions --------------------------------------------------------------------------
CHATS = [
    ([{"role": "user", "content": "Say hello."}], {}, ("Say hello.", None)),
    (
        [
            {"role": "system", "content": "Summarize the following transcript in a few sentences."},
            {"role": "user", "content": "four one six. what time is it"},
        ],
        {"max_tokens": 24},
        ("Summarize the following transcript in a few sentences.", "four one six. what time is it"),
    ),
    (
        [
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "Who is "}, {"type": "text", "text": "speaking?"}]},
        ],
        {"temperature": 0.8, "top_p": 0.9, "seed": 7, "max_completion_tokens": 16},
        ("Answer briefly.", "Who is speaking?"),
    ),
]


@pytest.mark.parametrize("messages,params,ask_args", CHATS, ids=["user", "system+user", "sampled"])
def test_chat_completions_equal_ask(oai, server_trained, messages, params, ask_args):
    sampling = {
        "max_new_tokens": params.get("max_tokens", params.get("max_completion_tokens")),
        "temperature": params.get("temperature"),
        "top_p": params.get("top_p"),
        "seed": params.get("seed"),
    }
    with CanaryClient(server_trained.grpc_url) as c:
        expected = c.ask_result(ask_args[0], transcript=ask_args[1], **sampling)
        assert c.ask(ask_args[0], transcript=ask_args[1], **sampling) == expected.text
    answer = oai.chat.completions.create(model=MODEL, messages=messages, **params)
    assert answer.object == "chat.completion" and answer.model == MODEL
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].message.content == expected.text
    assert answer.choices[0].finish_reason == expected.finish_reason
    chunks = list(oai.chat.completions.create(model=MODEL, messages=messages, stream=True, **params))
    assert all(ch.object == "chat.completion.chunk" and ch.id == chunks[0].id for ch in chunks)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == expected.text
    assert chunks[-1].choices[0].finish_reason == expected.finish_reason


@pytest.mark.parametrize("limit", [{"max_tokens": 2}, {"max_completion_tokens": 2}])
def test_a_chat_answer_cut_by_max_tokens_finishes_with_length(oai, server_trained, limit):
    messages = [{"role": "user", "content": "Tell me a long story about the sea."}]
    with CanaryClient(server_trained.grpc_url) as c:
        cut = c.ask_result("Tell me a long story about the sea.", max_new_tokens=2)
    assert cut.finish_reason == "length" and cut.truncated  # the model goes on past 2 tokens
    answer = oai.chat.completions.create(model=MODEL, messages=messages, **limit)
    assert answer.choices[0].finish_reason == "length" and answer.choices[0].message.content == cut.text
    chunks = list(oai.chat.completions.create(model=MODEL, messages=messages, stream=True, **limit))
    assert [ch.choices[0].finish_reason for ch in chunks][-1] == "length"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == cut.text


def test_message_lists_map_onto_ask_as_documented():
    r = parse_chat(
        {
            "messages": [
                {"role": "system", "content": "A"},
                {"role": "user", "content": "B"},
                {"role": "system", "content": "C"},
                {"role": "user", "content": "D"},
            ]
        }
    )
    assert (r.instruction, r.transcript) == ("A\n\nC", "B\n\nD")
    assert C.llm_mode_text(r.instruction, r.transcript) == "A\n\nC\n\nB\n\nD"
    r = parse_chat({"messages": [{"role": "user", "content": "only"}], "max_tokens": 5, "stream": True})
    assert (r.instruction, r.transcript, r.max_new_tokens, r.stream) == ("only", None, 5, True)
    for bad in (
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        [{"role": "system", "content": "only a system message"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        [],
    ):
        with pytest.raises(GatewayError) as e:
            parse_chat({"messages": bad})
        assert e.value.status == 400 and e.value.param.startswith("messages")


# -- models, health ----------------------------------------------------------------------------
def test_models_and_health(oai, gateway, http):
    assert [m.id for m in oai.models.list()] == [MODEL]
    assert oai.models.retrieve(MODEL).id == MODEL
    root = gateway.base_url.removesuffix("/v1")
    ready = httpx.get(root + "/health")  # probes carry no key
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert httpx.get(root + "/health/live").status_code == 200


# -- errors ------------------------------------------------------------------------------------
def _assert_openai_error(r: httpx.Response, status: int, param: str | None = None, words: tuple[str, ...] = ()):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"] and "Traceback" not in err["message"]
    if param is not None:
        assert err["param"] == param, err
    for w in words:
        assert w in err["message"], err["message"]


def _post_audio(http, raw: bytes, name: str = "clip.flac", **fields):
    data = {"model": MODEL, **fields}
    return http.post("/audio/transcriptions", data=data, files={"file": (name, raw)})


BAD_UPLOADS = {
    "corrupt": (
        lambda clip: b"RIFF\x24\x00\x00\x00WAVEnot really audio" + bytes(range(256)) * 8,
        {},
        "file",
        ("cannot decode",),
    ),
    "empty": (lambda clip: b"", {}, "file", ("empty",)),
    "over_the_size_limit": (lambda clip: b"\0" * (UPLOAD_LIMIT + 1), {}, "file", ("limit", "MiB")),
    "unknown_response_format": (lambda clip: clip, {"response_format": "xml"}, "response_format", ("'xml'", "json")),
    "diarized_json": (lambda clip: clip, {"response_format": "diarized_json"}, "response_format", ("diarized_json",)),
    "another_language": (lambda clip: clip, {"language": "de"}, "language", ("'de'", "English")),
    "temperature_out_of_range": (lambda clip: clip, {"temperature": "1.5"}, "temperature", ("1.5",)),
    "word_timestamps": (
        lambda clip: clip,
        {"response_format": "verbose_json", "timestamp_granularities[]": "word"},
        "timestamp_granularities",
        ("'word'",),
    ),
    "stream_of_srt": (lambda clip: clip, {"response_format": "srt", "stream": "true"}, "response_format", ("srt",)),
    "too_short_for_the_server": (lambda clip: _wav(np.zeros(10, np.float32)), {}, None, ("audio",)),
    # the stream's first answer is the server's refusal: a plain 400, before any event
    "too_short_streamed": (lambda clip: _wav(np.zeros(10, np.float32)), {"stream": "true"}, None, ("audio",)),
}


def _wav(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="WAV", subtype="FLOAT")
    return buf.getvalue()


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_get_400_in_openai_shape_and_the_service_keeps_serving(http, oai, clips, reference, case):
    make, fields, param, words = BAD_UPLOADS[case]
    _assert_openai_error(_post_audio(http, make(clips[0].read_bytes()), **fields), 400, param, words)
    assert _transcribe(oai, clips[1].read_bytes(), clips[1].name).text == reference[clips[1]]


def test_the_openai_client_raises_its_own_error_classes(gateway, oai, clips, reference):
    import openai  # lazy, as above

    with openai.OpenAI(base_url=gateway.base_url, api_key="wrong-key", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as e:
            _transcribe(bad, clips[0].read_bytes())
        assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as e:
        _transcribe(oai, b"", "empty.wav")
    assert e.value.status_code == 400 and e.value.param == "file"
    with pytest.raises(openai.BadRequestError) as e:
        _transcribe(oai, clips[0].read_bytes(), language="fr")
    assert "'fr'" in e.value.message and e.value.param == "language"
    with pytest.raises(openai.NotFoundError) as e:
        oai.audio.transcriptions.create(model="whisper-1", file=("c.flac", clips[0].read_bytes()))
    assert e.value.code == "model_not_found" and MODEL in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        )
    assert "assistant" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:  # the server's own range check, passed on
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "a"}], max_tokens=C.MAX_NEW_TOKENS_LIMIT + 1
        )
    assert str(C.MAX_NEW_TOKENS_LIMIT) in e.value.message
    assert _transcribe(oai, clips[1].read_bytes(), clips[1].name).text == reference[clips[1]]


def test_requests_without_the_key_get_401_and_probes_do_not_need_it(gateway, clips):
    root = gateway.base_url
    _assert_openai_error(
        httpx.post(
            root + "/audio/transcriptions", data={"model": MODEL}, files={"file": ("c.flac", clips[0].read_bytes())}
        ),
        401,
        words=("API key",),
    )
    _assert_openai_error(httpx.get(root + "/models", headers={"Authorization": "Bearer nope"}), 401)
    _assert_openai_error(httpx.get(root + "/models", headers={"Authorization": KEY}), 401)  # no "Bearer"
    assert httpx.get(root.removesuffix("/v1") + "/health/live").status_code == 200


def test_malformed_requests_get_400_or_404_in_openai_shape(http, oai, clips, reference):
    _assert_openai_error(
        http.post("/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        words=("JSON",),
    )
    _assert_openai_error(http.post("/audio/transcriptions", json={"model": MODEL}), 400, "file", ("multipart",))
    _assert_openai_error(http.post("/audio/transcriptions", data={"model": MODEL}), 400, "file")
    _assert_openai_error(http.get("/no/such/thing"), 404)
    _assert_openai_error(http.get("/audio/transcriptions"), 405)
    assert _transcribe(oai, clips[2].read_bytes(), clips[2].name).text == reference[clips[2]]


def test_triton_unreachable_is_503_with_retry_after(clips):
    opts = GatewayOptions(triton_url=f"127.0.0.1:{free_port()}", port=free_port(), retries=0)
    with BackgroundGateway(opts) as gw, httpx.Client(base_url=gw.base_url) as http:
        r = _post_audio(http, clips[0].read_bytes())
        _assert_openai_error(r, 503, words=("unavailable",))
        assert r.headers["retry-after"] == "1"
        _assert_openai_error(httpx.get(gw.base_url.removesuffix("/v1") + "/health"), 503, words=("not ready",))


# -- in-flight bound, disconnects, logs -------------------------------------------------------
def _half_sent_request(port: int, path: str, body: bytes, send: int) -> socket.socket:
    """A request whose body is only partly sent: it stays in flight until the socket closes."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:send]
    )
    return s


def _in_flight(gw) -> int:
    return httpx.get(gw.base_url.removesuffix("/v1") + "/health").json()["in_flight"]


def test_past_the_in_flight_bound_requests_get_429_with_retry_after(server_trained, clips, reference):
    opts = GatewayOptions(triton_url=server_trained.grpc_url, port=free_port(), max_in_flight=1)
    with BackgroundGateway(opts) as gw, httpx.Client(base_url=gw.base_url, timeout=120) as http:
        holder = _half_sent_request(opts.port, "/v1/chat/completions", b'{"model": "x", "messages": []}', 5)
        try:
            _wait_for(lambda: _in_flight(gw) == 1, 300, "the half-sent request to be in flight")
            r = _post_audio(http, clips[0].read_bytes())
            _assert_openai_error(r, 429, words=("in flight", "--max-in-flight 1"))
            assert r.headers["retry-after"] == str(opts.retry_after_s)
        finally:
            holder.close()
        _wait_for(lambda: _in_flight(gw) == 0, 300, "the closed request to leave")
        assert _post_audio(http, clips[0].read_bytes()).json()["text"] == reference[clips[0]]


def test_a_client_that_disconnects_cancels_its_triton_request(server_random, caplog):
    """tiny-random's LLM never stops by itself: only the cancellation ends the generation early."""
    caplog.set_level(logging.INFO, logger="canary_triton.gateway.access")
    before = llm_counters(server_random, C.LLM_BASE_MODEL)
    opts = GatewayOptions(triton_url=server_random.grpc_url, port=free_port())
    body = json.dumps(
        {
            "model": MODEL,
            "max_tokens": LONG_GENERATION_TOKENS,
            "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        }
    ).encode()
    with BackgroundGateway(opts) as gw:
        client = _half_sent_request(opts.port, "/v1/chat/completions", body, len(body))
        try:
            _wait_for(
                lambda: _llm_metric(server_random, "canary_llm_active_requests", C.LLM_BASE_MODEL) >= 1,
                300,
                "generation to start",
            )
        finally:
            client.close()
        assert_cancelled_early(server_random, before, C.LLM_BASE_MODEL)
        _wait_for(lambda: _in_flight(gw) == 0, 300, "the gateway to finish the request")
    lines = [r.getMessage() for r in caplog.records if r.name == "canary_triton.gateway.access"]
    assert any(" POST /v1/chat/completions 499 " in line for line in lines), lines


def test_access_log_lines_carry_no_audio_or_text(gateway, oai, clips, reference, caplog):
    caplog.set_level(logging.INFO, logger="canary_triton.gateway.access")
    prompt = "Repeat after me: purple elephant"
    answer = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}]).choices[0]
    text = _transcribe(oai, clips[3].read_bytes(), clips[3].name).text
    assert text == reference[clips[3]]
    # The client has its answer before the gateway writes the line; a request leaves the in-flight
    # count only after its line is written, so zero in flight orders the read after both lines.
    _wait_for(lambda: _in_flight(gateway) == 0, 300, "the gateway to log both requests")
    lines = [r.getMessage() for r in caplog.records if r.name == "canary_triton.gateway.access"]
    assert any(" POST /v1/audio/transcriptions 200 " in line and " audio=" in line for line in lines), lines
    assert any(" POST /v1/chat/completions 200 " in line for line in lines), lines
    secrets = [prompt, "purple", "elephant", text, answer.message.content.strip(), KEY]
    for line in lines:
        for s in secrets:
            assert not s or s not in line, (s, line)


# -- units: formats, command line -------------------------------------------------------------
def test_a_request_leaves_the_in_flight_count_only_after_its_access_line(caplog):
    load = Load()
    seen_at_log: list[int] = []

    class Probe(logging.Handler):
        def emit(self, record):
            seen_at_log.append(load.in_flight)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    probe = Probe()
    access = logging.getLogger("canary_triton.gateway.access")
    access.addHandler(probe)
    caplog.set_level(logging.INFO, logger=access.name)
    try:
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
        asyncio.run(Gate(app, GatewayOptions(triton_url="localhost:1"), load)(scope, receive, send))
    finally:
        access.removeHandler(probe)
    assert seen_at_log == [1] and load.in_flight == 0


def test_timed_formats_render_segments():
    segs = [Segment(0.5, 2.25, "one two"), Segment(3.0, 3661.5, " "), Segment(3662.0, 3663.0, "three")]
    assert render("srt", "one two three", segs, 3664.0) == (
        "1\n00:00:00,500 --> 00:00:02,250\none two\n\n2\n01:01:02,000 --> 01:01:03,000\nthree\n\n"
    )
    assert render("vtt", "one two three", segs, 3664.0) == (
        "WEBVTT\n\n00:00:00.500 --> 00:00:02.250\none two\n\n01:01:02.000 --> 01:01:03.000\nthree\n\n"
    )
    v = json.loads(render("verbose_json", "one two three", segs, 3664.0))
    assert v["duration"] == 3664.0 and [s["id"] for s in v["segments"]] == [0, 1, 2]
    assert json.loads(render("json", "a", None, 1.0))["text"] == "a" and render("text", "a", None, 1.0) == "a"


def test_gateway_command_refuses_bad_options(capsys):
    assert main(["gateway", "--max-upload-mb", "0"]) == 2
    assert "error: max_upload_bytes must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gateway", "--max-in-flight", "0"])
