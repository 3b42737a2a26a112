"""canary_triton/client/options.py, calls.py and api.py without a server: the options and the retry
policy (options), the ``Call`` each function builds (calls: model, tensors, outputs, parsing), and
``CanaryClient``'s sending, retrying and batching (api) over a stand-in for tritonclient's client
(the served behaviour is in tests/test_client.py)."""

from __future__ import annotations

import dataclasses
import json
import random
import threading

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from canary_triton import contract as C
from canary_triton.client import api
from canary_triton.client.api import CanaryClient
from canary_triton.client.audio_input import Audio
from canary_triton.client.calls import (
    Answer,
    Result,
    ask_call,
    ask_result_call,
    audio_request,
    entry_model,
    first_string,
    item_result,
    llm_request,
    make_inputs,
    segments_call,
    source_name,
    stream_model,
    summarize_call,
    transcribe_and_ask_call,
    transcribe_and_ask_result_call,
    transcribe_call,
)
from canary_triton.client.options import (
    ClientOptions,
    ServerError,
    backoff_delays,
    resolve_options,
    retry_delay,
    server_error,
)
from canary_triton.errors import CanaryTritonError
from canary_triton.longform.segment import Segment

SR = C.MelParams().sample_rate


def clip(seconds: float, name: str = "a.wav") -> Audio:
    return Audio(np.full(int(round(seconds * SR)), 0.25, np.float32), name)


# -- options ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(protocol="udp"), "protocol must be grpc or http, got 'udp'"),
        (dict(timeout_s=0), "timeout_s must be > 0, got 0"),
        (dict(retries=-1), "retries must be >= 0, got -1"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError) as e:
        ClientOptions(**kwargs)
    assert str(e.value) == message


def test_url_and_protocol_override_the_options_and_keep_the_rest():
    base = ClientOptions(url="h:1", retries=7, headers={"x": "1"})
    assert resolve_options(base, None, None) is base
    assert resolve_options(None, None, None) == ClientOptions()
    over = resolve_options(base, "h:2", "http")
    assert (over.url, over.protocol, over.retries, over.headers) == ("h:2", "http", 7, {"x": "1"})


# -- requests as data ------------------------------------------------------------------------
def test_audio_request_sends_max_new_tokens_only_when_given():
    a = clip(0.5)
    arrays = audio_request(a, None)
    assert list(arrays) == [C.AUDIO.name] and arrays[C.AUDIO.name].shape == (1, len(a.samples))
    arrays = audio_request(a, 9)
    assert arrays[C.MAX_NEW_TOKENS.name].dtype == np.int32 and arrays[C.MAX_NEW_TOKENS.name].tolist() == [[9]]


def test_llm_request_types_each_given_setting_as_the_contract_declares():
    arrays = llm_request("héllo", 5, 0.5, 0.9, 7)
    assert arrays[C.TEXT_INPUT.name].dtype == np.object_ and arrays[C.TEXT_INPUT.name].tolist() == [["héllo".encode()]]
    assert {k: (v.dtype, v.shape) for k, v in arrays.items() if k != C.TEXT_INPUT.name} == {
        C.MAX_NEW_TOKENS.name: (np.int32, (1, 1)),
        C.TEMPERATURE.name: (np.float32, (1, 1)),
        C.TOP_P.name: (np.float32, (1, 1)),
        C.SEED.name: (np.uint64, (1, 1)),
    }
    assert list(llm_request("x", None, None, None, None)) == [C.TEXT_INPUT.name]
    assert llm_request("x", None, 0.0, None, 0)[C.SEED.name].tolist() == [[0]]  # 0 is a value, not absent


@pytest.mark.parametrize("module", [grpcclient, httpclient])
def test_make_inputs_names_shapes_and_triton_types(module):
    tensors = make_inputs(
        module,
        {
            "audio": np.zeros((1, 5), np.float32),
            "n": np.array([[3]], np.int32),
            "seed": np.array([[1]], np.uint64),
            "text": np.array([[b"t"]], np.object_),
        },
    )
    assert [(t.name(), t.shape(), t.datatype()) for t in tensors] == [
        ("audio", [1, 5], "FP32"),
        ("n", [1, 1], "INT32"),
        ("seed", [1, 1], "UINT64"),
        ("text", [1, 1], "BYTES"),
    ]


def test_the_entry_point_follows_the_duration_unless_asked():
    opts = ClientOptions()
    at_limit, over = clip(C.MAX_AUDIO_SECONDS), clip(C.MAX_AUDIO_SECONDS + 0.01)
    assert entry_model(opts, at_limit, None) == C.ENSEMBLE_MODEL
    assert entry_model(opts, over, None) == C.LONG_FORM_MODEL
    assert entry_model(opts, at_limit, True) == C.LONG_FORM_MODEL and entry_model(opts, over, False) == C.ENSEMBLE_MODEL
    assert entry_model(ClientOptions(model="my_ensemble"), at_limit, None) == "my_ensemble"
    assert stream_model(opts, at_limit, None) == C.STREAM_MODEL
    assert stream_model(opts, over, None) == C.LONG_FORM_STREAM_MODEL
    assert stream_model(opts, over, False) == C.STREAM_MODEL


def test_transcribe_and_segments_calls():
    a = clip(1.0)
    c = transcribe_call(ClientOptions(), a, 12, None)
    assert c.model == C.ENSEMBLE_MODEL and c.outputs == (C.TRANSCRIPT.name,)
    assert c.arrays.keys() == {C.AUDIO.name, C.MAX_NEW_TOKENS.name}
    assert c.parse({C.TRANSCRIPT.name: "hello"}) == "hello"
    assert transcribe_call(ClientOptions(), clip(41.0), None, None).model == C.LONG_FORM_MODEL
    s = segments_call(a, None)
    assert s.model == C.LONG_FORM_MODEL and s.outputs == (C.SEGMENTS.name,)
    segments = [{"start": 0.0, "end": 1.5, "text": "a b"}]
    assert s.parse({C.SEGMENTS.name: json.dumps(segments)}) == [Segment(0.0, 1.5, "a b")]


def test_llm_mode_calls_build_the_contracts_text():
    c = ask_call("Who speaks?", " the transcript ", 6, 0.3, None, 2)
    assert c.model == C.LLM_MODE_MODEL and c.outputs == (C.TEXT_OUTPUT.name,)
    assert c.arrays[C.TEXT_INPUT.name][0, 0].decode() == C.llm_mode_text("Who speaks?", " the transcript ")
    assert c.arrays.keys() == {C.TEXT_INPUT.name, C.MAX_NEW_TOKENS.name, C.TEMPERATURE.name, C.SEED.name}
    assert c.parse({C.TEXT_OUTPUT.name: "Bob."}) == "Bob."
    assert ask_call("Hi", None, None, None, None, None).arrays[C.TEXT_INPUT.name][0, 0] == b"Hi"
    s = summarize_call("words words", 20)
    assert s.arrays[C.TEXT_INPUT.name][0, 0].decode() == C.llm_mode_text(C.SUMMARIZE_INSTRUCTION, "words words")
    assert s.arrays[C.MAX_NEW_TOKENS.name].tolist() == [[20]] and C.TEMPERATURE.name not in s.arrays


def test_transcribe_and_ask_sends_audio_and_instruction_to_one_model():
    a = clip(2.0)
    c = transcribe_and_ask_call(a, "Summarize.", 8)
    assert c.model == C.ASK_MODEL and c.outputs == (C.TRANSCRIPT.name, C.TEXT_OUTPUT.name)
    assert np.array_equal(c.arrays[C.AUDIO.name][0], a.samples)
    assert c.arrays[C.TEXT_INPUT.name][0, 0] == b"Summarize." and c.arrays[C.MAX_NEW_TOKENS.name].tolist() == [[8]]
    assert c.parse({C.TRANSCRIPT.name: "t", C.TEXT_OUTPUT.name: "a"}) == ("t", "a")


def test_the_typed_llm_calls_ask_for_the_finish_reason_too():
    c = ask_result_call("Who speaks?", "t", 6, None, None, None)
    assert c.model == C.LLM_MODE_MODEL and c.outputs == (C.TEXT_OUTPUT.name, C.FINISH_REASON.name)
    assert c.arrays.keys() == ask_call("Who speaks?", "t", 6, None, None, None).arrays.keys()
    answer = c.parse({C.TEXT_OUTPUT.name: "Bob", C.FINISH_REASON.name: "length"})
    assert answer == Answer("Bob", C.FinishReason.LENGTH) and answer.truncated
    assert not c.parse({C.TEXT_OUTPUT.name: "Bob.", C.FINISH_REASON.name: "stop"}).truncated
    t = transcribe_and_ask_result_call(clip(2.0), "Summarize.", 8)
    assert t.model == C.ASK_MODEL and t.outputs == (C.TRANSCRIPT.name, C.TEXT_OUTPUT.name, C.FINISH_REASON.name)
    out = {C.TRANSCRIPT.name: "t", C.TEXT_OUTPUT.name: "a", C.FINISH_REASON.name: "stop"}
    assert t.parse(out) == ("t", Answer("a", C.FinishReason.STOP))
    with pytest.raises(dataclasses.FrozenInstanceError):
        answer.text = "x"


def test_results_name_their_source():
    assert source_name(3, "x/y.wav") == "x/y.wav" and source_name(0, clip(1, "named")) == "named"
    assert source_name(2, b"RIFF") == "<item 2>" and source_name(4, np.zeros(3)) == "<item 4>"
    assert source_name(5, (np.zeros(3), 8000)) == "<item 5>"
    undecoded = item_result(1, "bad.wav", None, 0.0, error="cannot decode")
    assert undecoded == Result(1, "bad.wav", 0.0, error="cannot decode") and not undecoded.ok
    done = item_result(0, "a.wav", clip(2.0), 0.0, text="hi")
    assert done.ok and done.seconds == 2.0 and done.text == "hi" and done.latency_s > 0


# -- errors and retries ----------------------------------------------------------------------
def test_server_errors_keep_the_status_and_say_whether_to_retry():
    e = server_error(
        "canary_qwen", InferenceServerException("input 'audio' is empty", "StatusCode.INVALID_ARGUMENT"), "h:1"
    )
    assert (str(e), e.status, e.retryable) == (
        "canary_qwen: input 'audio' is empty",
        "StatusCode.INVALID_ARGUMENT",
        False,
    )
    e = server_error("canary_qwen", InferenceServerException("model is not ready", "StatusCode.UNAVAILABLE"), "h:1")
    assert e.retryable
    e = server_error("canary_qwen", InferenceServerException("Exceeds maximum queue size", "400"), "h:1")
    assert e.retryable  # a full queue, whatever the status says
    e = server_error("llm", ConnectionRefusedError("refused"), "h:9")
    assert (str(e), e.status, e.retryable) == ("llm: cannot reach h:9: refused", "UNAVAILABLE", True)


def test_retry_delay_raises_what_is_not_retryable_and_gives_up_when_the_delays_end():
    final = ServerError("m: bad input", "400", retryable=False)
    with pytest.raises(ServerError) as e:
        retry_delay(final, iter([1.0]), 3)
    assert e.value is final
    busy = ServerError("m: busy", "StatusCode.UNAVAILABLE", retryable=True)
    delays = iter([0.5])
    assert retry_delay(busy, delays, 1) == 0.5
    with pytest.raises(ServerError) as e:
        retry_delay(busy, delays, 1)
    assert str(e.value) == "m: busy (gave up after 1 retries)" and e.value.status == busy.status and e.value.retryable


def test_backoff_is_seeded_jitter_under_a_doubling_cap():
    opts = ClientOptions(retries=5, backoff_s=1.0, max_backoff_s=4.0)
    a, b = list(backoff_delays(opts, random.Random(3))), list(backoff_delays(opts, random.Random(3)))
    assert a == b and len(a) == 5
    assert all(cap / 2 <= d <= cap for d, cap in zip(a, [1.0, 2.0, 4.0, 4.0, 4.0]))
    assert list(backoff_delays(ClientOptions(retries=0))) == []


# -- CanaryClient over a stand-in transport --------------------------------------------------
class FakeResult:
    def __init__(self, strings: dict[str, str]):
        self.strings = strings

    def as_numpy(self, name):
        return np.array([[self.strings[name].encode()]], dtype=np.object_)


class FakeTriton:
    """tritonclient's InferenceServerClient as CanaryClient uses it: ``answer(model, arrays)`` gives
    the outputs' strings or raises; every call is kept."""

    def __init__(self, answer):
        self.answer, self.calls, self.closed = answer, [], False
        self.lock = threading.Lock()

    def infer(self, model, inputs, outputs=None, headers=None, **kwargs):
        arrays = {t.name(): t for t in inputs}
        with self.lock:
            self.calls.append((model, arrays, [o.name() for o in outputs], headers, kwargs))
        return FakeResult(self.answer(model, arrays))

    def is_server_ready(self):
        return False

    def close(self):
        self.closed = True


def client_with(answer, monkeypatch, **opts) -> tuple[CanaryClient, FakeTriton, list[float]]:
    waits: list[float] = []
    monkeypatch.setattr(api, "sleep", waits.append)  # backoff waits recorded, not slept
    c = CanaryClient(options=ClientOptions(url="127.0.0.1:1", **opts))
    c._client.close()
    c._client = fake = FakeTriton(answer)
    return c, fake, waits


def test_a_call_sends_its_model_tensors_outputs_deadline_and_headers(monkeypatch):
    c, fake, _ = client_with(
        lambda model, arrays: {C.TRANSCRIPT.name: "hello world"},
        monkeypatch,
        timeout_s=7.0,
        headers={"authorization": "Bearer k"},
    )
    with c:
        assert c.transcribe(np.zeros(1600, np.float32), max_new_tokens=5) == "hello world"
    assert fake.closed
    ((model, arrays, outputs, headers, kwargs),) = fake.calls
    assert model == C.ENSEMBLE_MODEL and outputs == [C.TRANSCRIPT.name]
    assert set(arrays) == {C.AUDIO.name, C.MAX_NEW_TOKENS.name} and arrays[C.AUDIO.name].shape() == [1, 1600]
    assert headers == {"authorization": "Bearer k"} and kwargs == {"client_timeout": 7.0}


def test_each_client_call_goes_to_its_model_and_parses_its_outputs(monkeypatch):
    answers = {
        C.LLM_MODE_MODEL: {C.TEXT_OUTPUT.name: "an answer", C.FINISH_REASON.name: "length"},
        C.ASK_MODEL: {C.TRANSCRIPT.name: "words", C.TEXT_OUTPUT.name: "reply", C.FINISH_REASON.name: "stop"},
        C.LONG_FORM_MODEL: {C.SEGMENTS.name: json.dumps([{"start": 0, "end": 1, "text": "x"}])},
    }
    c, fake, _ = client_with(lambda model, arrays: answers[model], monkeypatch)
    audio = np.zeros(SR, np.float32)
    assert c.ask("Q?", "t") == "an answer" and c.summarize("t") == "an answer"
    assert c.transcribe_and_ask(audio, "Q?") == ("words", "reply")
    assert c.ask_result("Q?", "t") == Answer("an answer", C.FinishReason.LENGTH)
    assert c.transcribe_and_ask_result(audio, "Q?") == ("words", Answer("reply", C.FinishReason.STOP))
    assert c.transcribe_segments(audio) == [Segment(0.0, 1.0, "x")]
    assert [m for m, *_ in fake.calls] == [
        C.LLM_MODE_MODEL,
        C.LLM_MODE_MODEL,
        C.ASK_MODEL,
        C.LLM_MODE_MODEL,
        C.ASK_MODEL,
        C.LONG_FORM_MODEL,
    ]
    assert fake.calls[3][2] == [C.TEXT_OUTPUT.name, C.FINISH_REASON.name]


def test_unavailable_is_retried_with_the_backoff_until_it_succeeds(monkeypatch):
    failures = iter([InferenceServerException("queue full", "StatusCode.UNAVAILABLE"), OSError("connection reset")])

    def answer(model, arrays):
        err = next(failures, None)
        if err is not None:
            raise err
        return {C.TRANSCRIPT.name: "after two retries"}

    c, fake, waits = client_with(answer, monkeypatch, retries=3, backoff_s=0.4)
    assert c.transcribe(np.zeros(1600, np.float32)) == "after two retries"
    assert len(fake.calls) == 3 and len(waits) == 2
    assert 0.2 <= waits[0] <= 0.4 and 0.4 <= waits[1] <= 0.8


def test_a_refusal_is_raised_at_once_and_retries_end(monkeypatch):
    def refuse(model, arrays):
        raise InferenceServerException("input 'audio' has 5 samples", "StatusCode.INVALID_ARGUMENT")

    c, fake, waits = client_with(refuse, monkeypatch, retries=3)
    with pytest.raises(ServerError, match="canary_qwen: input 'audio' has 5 samples") as e:
        c.transcribe(np.zeros(1600, np.float32))
    assert not e.value.retryable and len(fake.calls) == 1 and waits == []

    def busy(model, arrays):
        raise InferenceServerException("busy", "StatusCode.UNAVAILABLE")

    c, fake, waits = client_with(busy, monkeypatch, retries=2)
    with pytest.raises(ServerError, match=r"gave up after 2 retries"):
        c.transcribe(np.zeros(1600, np.float32))
    assert len(fake.calls) == 3 and len(waits) == 2


def test_transcribe_many_keeps_the_order_and_reports_each_items_error(monkeypatch):
    def answer(model, arrays):
        n = arrays[C.AUDIO.name].shape()[1]
        if n == 3200:
            raise InferenceServerException("refused", "StatusCode.INVALID_ARGUMENT")
        return {C.TRANSCRIPT.name: f"{n} samples"}

    c, fake, _ = client_with(answer, monkeypatch)
    seen: list[int] = []
    items = [np.zeros(1600, np.float32), b"", np.zeros(3200, np.float32), np.zeros(4800, np.float32)]
    results = c.transcribe_many(items, concurrency=3, on_result=lambda r: seen.append(r.index))
    assert [r.index for r in results] == [0, 1, 2, 3] and sorted(seen) == [0, 1, 2, 3]
    assert [r.text for r in results] == ["1600 samples", None, None, "4800 samples"]
    assert results[1].name == "<item 1>" and results[1].seconds == 0.0  # never decoded
    assert results[1].error == "audio <bytes> is empty (0 bytes)"
    assert "refused" in results[2].error and results[2].seconds == 0.2
    assert len(fake.calls) == 3  # the undecodable item was never sent
    with pytest.raises(ValueError, match="concurrency must be >= 1, got 0"):
        c.transcribe_many(items, concurrency=0)


def test_streaming_needs_grpc(monkeypatch):
    c = CanaryClient("127.0.0.1:1", protocol="http")
    with pytest.raises(CanaryTritonError, match="streaming needs the gRPC protocol"):
        next(c.stream(np.zeros(1600, np.float32)))
    c.close()


def test_wait_ready_reports_the_server_that_never_became_ready(monkeypatch):
    c, _, _ = client_with(lambda *a: {}, monkeypatch)
    with pytest.raises(ServerError, match=r"server at 127\.0\.0\.1:1 not ready after 0 s") as e:
        c.wait_ready(0)
    assert e.value.status == "UNAVAILABLE"


def test_first_string_decodes_bytes():
    assert first_string(FakeResult({"t": "é"}), "t") == "é"

    class Plain:
        def as_numpy(self, name):
            return np.array([["already text"]], dtype=np.object_)

    assert first_string(Plain(), "t") == "already text"
