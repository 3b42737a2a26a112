"""`canary_qwen_stream` in-process (fake pb_utils), over the real preprocessor, encoder,
projector and llm: partial transcripts that join to the unary ensemble's (and NeMo's) transcript,
one FINAL flag, errors from a called model with their code, the VAD gate."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import contract as C

from .conftest import SR
from .fake_pb_utils import FINAL, error_of
from .inprocess import InProcess

ASR = [*C.ASR_PIPELINE_MODELS, C.STREAM_MODEL]


@pytest.fixture(scope="module")
def served(exported_trained):
    s = InProcess(exported_trained, ASR)
    yield s
    s.close()


def _stream(s, audio, **more):
    request = s.pb.request({C.AUDIO.name: audio[None], **more})
    assert s[C.STREAM_MODEL].execute([request]) is None
    responses = request.sender.wait()
    return request, responses


def _text(response, name=C.TRANSCRIPT.name):
    return response.outputs()[name].reshape(-1)[0].decode("utf-8")


def transcribe(s, audio) -> str:
    """The unary ensemble `canary_qwen`, run step by step in-process."""
    request = s.pb.InferenceRequest(
        model_name=C.ENSEMBLE_MODEL,
        inputs=[s.pb.Tensor(C.AUDIO.name, audio[None])],
        requested_output_names=[C.TRANSCRIPT.name],
    )
    response = request.exec()
    assert not response.has_error(), response.error().message()
    return _text(response)


def test_pieces_join_to_the_ensembles_transcript_and_nemos(served, heldout, oracle_trained):
    clips = [a for a, _ in heldout[:2]]
    want = oracle_trained.transcribe(clips)
    for clip, nemo in zip(clips, want):
        request, responses = _stream(served, clip)
        assert request.sender.flags[-1] == FINAL and set(request.sender.flags[:-1]) <= {0}
        joined = "".join(_text(r) for r in responses)
        assert joined == transcribe(served, clip) == nemo and nemo


def test_short_audio_fails_with_the_preprocessors_invalid_arg(served):
    request, _ = _stream(served, np.zeros(5, np.float32))
    code, message = error_of(request.sender.final())
    assert code == "INVALID_ARG" and "at least 160" in message


def test_vad_gate_answers_silence_with_empty_text_without_the_llm(exported_trained):
    gated = InProcess(
        exported_trained,
        [C.PREPROCESSOR_MODEL, C.STREAM_MODEL],
        parameters={C.PREPROCESSOR_MODEL: {"vad_gate": "true"}},
    )
    try:
        request, responses = _stream(gated, np.zeros(SR, np.float32))
        assert request.sender.flags == [FINAL] and _text(responses[0]) == ""
        assert gated.pb.calls_to(C.ENCODER_MODEL) == [] and gated.pb.calls_to(C.LLM_MODEL) == []
    finally:
        gated.close()


def test_a_failing_partial_send_stops_the_generation_before_the_error(served, heldout):
    """The generation nobody reads any more is stopped (by its id) before the FINAL error response,
    and the request is not asked whether it was cancelled after it (Triton 2.51 fails then)."""
    model = served[C.STREAM_MODEL]
    request = served.pb.request({C.AUDIO.name: heldout[0][0][None]})
    sender, send = request.sender, request.sender.send
    stops_at_final = []
    asked_after_final = []
    is_cancelled = request.is_cancelled

    def failing_partials(response=None, flags=0):
        if not flags & FINAL:
            raise RuntimeError("the client is gone")
        stops_at_final.append(len(stop_requests()))
        send(response, flags)

    def stop_requests():
        return [r for r in served.pb.calls_to(C.LLM_MODEL) if any(t.name() == C.STOP.name for t in r.inputs())]

    def asked():
        if sender.done.is_set():
            asked_after_final.append(1)
        return is_cancelled()

    request.is_cancelled = asked
    sender.send = failing_partials
    stops_before = len(stop_requests())
    assert model.execute([request]) is None
    code, message = error_of(sender.final())
    assert code == "INTERNAL" and "the client is gone" in message
    assert stops_at_final == [stops_before + 1] and asked_after_final == []
