"""`canary_qwen_long` and `canary_qwen_long_stream` in-process (fake pb_utils): segments go to
`canary_qwen` through BLS (a canned stand-in here that names each segment), their texts joined in
order; the streaming variant's pieces and flags; limits, bad input and cancellation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.longform.segmenter import SegmentOptions, join_texts, model_input, split

from .conftest import SR, TINY_LONG_FORM_MERGE_S
from .fake_pb_utils import FINAL, InferenceResponse, Tensor, error_of, get_input_tensor_by_name
from .inprocess import InProcess
from .test_longform_segmenter import long_recording

OPTS = SegmentOptions(merge_s=TINY_LONG_FORM_MERGE_S)


def _segment_text(request) -> str:
    """The canned `canary_qwen`: a text naming the segment by its length and first samples."""
    audio = get_input_tensor_by_name(request, C.AUDIO.name).as_numpy()
    return f"s{audio.shape[1]} {abs(float(audio[0, audio.shape[1] // 2])):.4f}"


@pytest.fixture(scope="module")
def served(exported_trained):
    s = InProcess(exported_trained, [C.LONG_FORM_MODEL, C.LONG_FORM_STREAM_MODEL])
    s.pb.route(
        C.ENSEMBLE_MODEL,
        lambda r: InferenceResponse(
            [Tensor(C.TRANSCRIPT.name, np.array([[_segment_text(r).encode()]], dtype=np.object_))]
        ),
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def recording(heldout):
    audio, _, _ = long_recording(heldout, 60, seed=7, pauses=(0.3, 1.5))
    return audio


def _run(s, model, audio, **more):
    request = s.pb.request({C.AUDIO.name: audio[None], **more})
    assert s[model].execute([request]) is None
    return request, request.sender.wait()


def _out(response, name):
    return response.outputs()[name].reshape(-1)[0].decode("utf-8")


def test_unary_transcript_is_the_segments_texts_joined_with_their_times(served, recording):
    planned = split(recording, SR, OPTS)
    assert len(planned) > 3
    texts = [
        _segment_text(served.pb.request({C.AUDIO.name: model_input(recording, s, OPTS, SR)[None]})) for s in planned
    ]
    request, _ = _run(served, C.LONG_FORM_MODEL, recording)
    response = request.sender.final()
    assert _out(response, C.TRANSCRIPT.name) == join_texts(texts, planned)
    segments = json.loads(_out(response, C.SEGMENTS.name))
    assert [(d["start"], d["end"], d["text"]) for d in segments] == [
        (round(s.start / SR, 3), round(s.end / SR, 3), t) for s, t in zip(planned, texts)
    ]


def test_the_streaming_variant_sends_each_segment_then_a_flag(served, recording):
    unary, _ = _run(served, C.LONG_FORM_MODEL, recording)
    request, responses = _run(served, C.LONG_FORM_STREAM_MODEL, recording)
    assert request.sender.flags[-1] == FINAL and responses[-1] is None and set(request.sender.flags[:-1]) == {0}
    pieces = [_out(r, C.TRANSCRIPT.name) for r in responses[:-1]]
    assert len(pieces) == len(split(recording, SR, OPTS))
    assert "".join(pieces) == _out(unary.sender.final(), C.TRANSCRIPT.name)
    assert all(len(json.loads(_out(r, C.SEGMENTS.name))) == 1 for r in responses[:-1])


def test_max_new_tokens_is_checked_and_forwarded(served, recording):
    before = len(served.pb.calls_to(C.ENSEMBLE_MODEL))
    request, _ = _run(served, C.LONG_FORM_MODEL, recording[: 45 * SR], max_new_tokens=np.array([[9]], np.int32))
    assert not request.sender.final().has_error()
    forwarded = served.pb.calls_to(C.ENSEMBLE_MODEL)[before:]
    assert forwarded and all(
        get_input_tensor_by_name(r, C.MAX_NEW_TOKENS.name).as_numpy().tolist() == [[9]] for r in forwarded
    )
    request, _ = _run(served, C.LONG_FORM_MODEL, recording, max_new_tokens=np.array([[0]], np.int32))
    assert error_of(request.sender.final()) == (
        "INVALID_ARG",
        f"input 'max_new_tokens' is 0; it must be between 1 and {C.MAX_NEW_TOKENS_LIMIT}",
    )


@pytest.mark.parametrize(
    "audio,message",
    [
        (np.full(50 * SR, np.nan, np.float32), "NaN or Inf"),
        (np.zeros(10, np.float32), "at least 160"),
    ],
)
def test_bad_audio(served, audio, message):
    request, _ = _run(served, C.LONG_FORM_MODEL, audio)
    code, text = error_of(request.sender.final())
    assert code == "INVALID_ARG" and message in text


def test_over_the_long_form_limit_names_it(served):
    limit = served[C.LONG_FORM_MODEL].opts.max_seconds
    request, _ = _run(served, C.LONG_FORM_MODEL, np.zeros(int(limit * SR) + SR, np.float32))
    code, text = error_of(request.sender.final())
    assert code == "INVALID_ARG" and f"the limit is {limit:g} s" in text


def test_silence_has_no_segment_and_no_text(served):
    before = len(served.pb.calls_to(C.ENSEMBLE_MODEL))
    request, _ = _run(served, C.LONG_FORM_MODEL, np.zeros(45 * SR, np.float32))
    response = request.sender.final()
    assert _out(response, C.TRANSCRIPT.name) == "" and json.loads(_out(response, C.SEGMENTS.name)) == []
    assert len(served.pb.calls_to(C.ENSEMBLE_MODEL)) == before


def test_a_cancelled_request_is_answered_cancelled(served, recording):
    request = served.pb.request({C.AUDIO.name: recording[None]})
    request.cancel()
    served[C.LONG_FORM_MODEL].execute([request])
    assert error_of(request.sender.final()) == ("CANCELLED", "the request was cancelled by the client")
