"""`canary_qwen_ask` in-process (fake pb_utils): ASR then LLM mode in one call, over the real
models; the long-form route for audio over 40 s; its own input checks."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import contract as C

from .conftest import SR
from .fake_pb_utils import InferenceResponse, Tensor, error_of, get_input_tensor_by_name
from .inprocess import InProcess

MODELS = [*C.ASR_PIPELINE_MODELS, C.LLM_BASE_MODEL, C.LLM_MODE_MODEL, C.ASK_MODEL]


@pytest.fixture(scope="module")
def served(exported_trained):
    s = InProcess(exported_trained, MODELS)
    yield s
    s.close()


def _text(x):
    return np.array([[x.encode("utf-8")]], dtype=np.object_)


def _ask(s, audio, instruction: bytes, **more):
    request = s.pb.request(
        {C.AUDIO.name: audio[None], C.TEXT_INPUT.name: np.array([[instruction]], np.object_), **more}
    )
    assert s[C.ASK_MODEL].execute([request]) is None
    return request.sender.final()


def _call(s, model, inputs, *outputs):
    response = s.pb.InferenceRequest(
        model_name=model, inputs=[Tensor(k, v) for k, v in inputs.items()], requested_output_names=list(outputs)
    ).exec()
    assert not response.has_error(), response.error().message()
    got = tuple(response.outputs()[o][0, 0].decode("utf-8") for o in outputs)
    return got[0] if len(got) == 1 else got


def test_equals_the_two_calls(served, heldout):
    audio = heldout[0][0]
    got = _ask(served, audio, b"Summarize.", max_new_tokens=np.array([[6]], np.int32)).outputs()
    transcript = _call(served, C.ENSEMBLE_MODEL, {C.AUDIO.name: audio[None]}, C.TRANSCRIPT.name)
    answer, reason = _call(
        served,
        C.LLM_MODE_MODEL,
        {
            C.TEXT_INPUT.name: _text(C.llm_mode_text("Summarize.", transcript)),
            C.MAX_NEW_TOKENS.name: np.array([[6]], np.int32),
        },
        C.TEXT_OUTPUT.name,
        C.FINISH_REASON.name,
    )
    assert got[C.TRANSCRIPT.name][0, 0].decode("utf-8") == transcript and transcript
    assert got[C.TEXT_OUTPUT.name][0, 0].decode("utf-8") == answer
    # the answer's finish reason is LLM mode's, passed on (stop or length, never anything else)
    assert got[C.FINISH_REASON.name].shape == (1, 1) and got[C.FINISH_REASON.name][0, 0].decode() == reason
    assert reason in ("stop", "length")
    forwarded = served.pb.calls_to(C.LLM_MODE_MODEL)[-2]  # the ask's call, before the test's own
    assert get_input_tensor_by_name(forwarded, C.MAX_NEW_TOKENS.name).as_numpy().shape == (1, 1)


def test_audio_over_40_s_goes_to_the_long_form_model(served):
    served.pb.route(C.LONG_FORM_MODEL, lambda r: InferenceResponse([Tensor(C.TRANSCRIPT.name, _text("a long talk"))]))
    try:
        response = _ask(served, np.zeros(45 * SR, np.float32) + 0.01, b"What was it?")
        assert response.outputs()[C.TRANSCRIPT.name][0, 0] == b"a long talk"
        assert len(served.pb.calls_to(C.LONG_FORM_MODEL)) == 1
    finally:
        del served.pb.routes[C.LONG_FORM_MODEL]


@pytest.mark.parametrize(
    "audio,instruction,message",
    [
        (np.zeros(5, np.float32), b"hi", "at least 160"),
        (np.full(SR, np.nan, np.float32), b"hi", "NaN or Inf"),
        (np.zeros(SR, np.float32) + 0.01, b"   ", "(the instruction) is empty"),
        (np.zeros(SR, np.float32) + 0.01, b"\xff\xfe", "(the instruction) is not valid UTF-8"),
    ],
)
def test_bad_input_is_invalid_arg_before_any_call(served, audio, instruction, message):
    before = len(served.pb.calls)
    code, text = error_of(_ask(served, audio, instruction))
    assert code == "INVALID_ARG" and message in text, text
    assert len(served.pb.calls) == before
