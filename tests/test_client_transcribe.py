"""canary_triton/client/transcribe.py: the one-call helpers open one client with the caller's options, pass their
arguments on, and close it; ``ask`` sends its text as it is (served: tests/test_client.py)."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.client import transcribe as helpers
from canary_triton.client.options import ClientOptions, ServerError


class RecordingClient:
    """Stands in for CanaryClient: records how it was opened, what it was asked, and its closing."""

    opened: list["RecordingClient"] = []

    def __init__(self, options=None, concurrency=16):
        self.options, self.concurrency, self.asked, self.closed = options, concurrency, [], False
        RecordingClient.opened.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True

    def infer(self, model, inputs, output):
        self.asked.append(("infer", model, inputs, output))
        if model == "refusing":
            raise ServerError("refusing: input 'audio' is empty", "400")
        return "answer"

    def transcribe(self, audio, sample_rate=None, max_new_tokens=None, long_form=None):
        self.asked.append(("transcribe", audio, sample_rate, max_new_tokens, long_form))
        return "transcript"


@pytest.fixture
def opened(monkeypatch) -> list[RecordingClient]:
    RecordingClient.opened = []
    monkeypatch.setattr(helpers, "CanaryClient", RecordingClient)
    return RecordingClient.opened


def test_transcribe_opens_one_client_with_the_options_and_passes_everything_on(opened):
    opts = ClientOptions(url="h:5", retries=0)
    audio = np.zeros(1600, np.float32)
    assert helpers.transcribe(audio, opts, max_new_tokens=7, sample_rate=8000, long_form=False) == "transcript"
    (c,) = opened
    assert c.options is opts and c.concurrency == 1 and c.closed
    assert c.asked == [("transcribe", audio, 8000, 7, False)]
    helpers.transcribe("a.wav")
    assert opened[1].options == ClientOptions() and opened[1].asked == [("transcribe", "a.wav", None, None, None)]


def test_infer_one_closes_its_client_on_an_error_too(opened):
    with pytest.raises(ServerError, match="input 'audio' is empty"):
        helpers.infer_one(ClientOptions(), "refusing", {}, "transcript")
    assert opened[0].closed


@pytest.mark.parametrize("text,sent", [("héllo", "héllo".encode()), (b"\xff raw", b"\xff raw")])
def test_ask_sends_text_as_utf8_or_bytes_unchanged_to_llm_mode(opened, text, sent):
    assert helpers.ask(text, max_new_tokens=3, temperature=0.2, top_p=0.5, seed=4) == "answer"
    ((kind, model, inputs, output),) = opened[0].asked
    assert (kind, model, output) == ("infer", C.LLM_MODE_MODEL, C.TEXT_OUTPUT.name)
    assert inputs[C.TEXT_INPUT.name].dtype == np.object_ and inputs[C.TEXT_INPUT.name].tolist() == [[sent]]
    assert {k: v.tolist() for k, v in inputs.items() if k != C.TEXT_INPUT.name} == {
        C.MAX_NEW_TOKENS.name: [[3]],
        C.TEMPERATURE.name: [[pytest.approx(0.2)]],
        C.TOP_P.name: [[0.5]],
        C.SEED.name: [[4]],
    }


def test_ask_without_settings_sends_only_the_text(opened):
    helpers.ask("Hi")
    ((_, _, inputs, _),) = opened[0].asked
    assert list(inputs) == [C.TEXT_INPUT.name]
