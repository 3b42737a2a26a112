"""The `llm_unary` model in-process (fake pb_utils): it forwards to the decoupled `llm` through BLS
and answers once; its own input checks; the VAD gate; error codes and cancellation across the hop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from canary_triton import contract as C

from .fake_pb_utils import FINAL, InferenceResponse, Tensor, TritonError, error_of, get_input_tensor_by_name
from .inprocess import InProcess


@pytest.fixture(scope="module")
def served(exported_trained):
    s = InProcess(exported_trained, [C.LLM_MODEL, C.LLM_UNARY_MODEL])
    yield s
    s.close()


@pytest.fixture
def unary(served):
    yield served[C.LLM_UNARY_MODEL]
    served.pb.route(C.LLM_MODEL, served[C.LLM_MODEL])  # undo a test's canned route


def _one(v, dt=np.int32):
    return np.array([[v]], dtype=dt)


def _inputs(ids, out_len, **more):
    d = {
        C.INPUT_IDS.name: np.array([ids], np.int32),
        C.INPUT_LENGTHS.name: _one(len(ids)),
        C.REQUEST_OUTPUT_LEN.name: _one(out_len),
        C.END_ID.name: _one(-1),
    }
    d.update(more)
    return d


def _tokens(response):
    got = response.outputs()
    assert got[C.OUTPUT_IDS.name].dtype == np.int32 and got[C.SEQUENCE_LENGTH.name].dtype == np.int32
    assert got[C.OUTPUT_IDS.name].shape == (1, 1, int(got[C.SEQUENCE_LENGTH.name][0, 0]))
    return got[C.OUTPUT_IDS.name][0, 0].tolist()


def _answer(m, inputs, request_id=""):
    request = m.pb.request(inputs, request_id=request_id)
    assert m.execute([request]) is None
    return request, request.sender.final()


def test_answers_once_with_the_tokens_the_llm_streams(served, unary):
    inputs = _inputs([5, 17, 42], 5)
    direct = served.pb.request(inputs)
    served[C.LLM_MODEL].execute([direct])
    want = _tokens(direct.sender.final())
    before = len(served.pb.calls_to(C.LLM_MODEL))
    _, response = _answer(unary, {**inputs, C.STREAMING.name: _one(True, np.bool_)})
    assert _tokens(response) == want and len(want) == 5
    forwarded = served.pb.calls_to(C.LLM_MODEL)[before:]
    assert len(forwarded) == 1 and forwarded[0].request_id()  # a fresh id, for a stop request
    names = [t.name() for t in forwarded[0].inputs()]
    assert C.STOP.name not in names and names.count(C.STREAMING.name) == 1  # the forwarder's to set:
    assert get_input_tensor_by_name(forwarded[0], C.STREAMING.name).as_numpy().tolist() == [[True]]  # always on


@pytest.mark.parametrize(
    "inputs,message",
    [
        (_inputs([5, 10_000], 4), "ids must be in [0, "),
        (_inputs([5, 6], 0), "request_output_len"),
        ({C.INPUT_IDS.name: np.array([[5]], np.int32)}, f"input '{C.REQUEST_OUTPUT_LEN.name}' is required"),
    ],
)
def test_bad_tensors_fail_here_with_invalid_arg_without_calling_the_llm(served, unary, inputs, message):
    before = len(served.pb.calls_to(C.LLM_MODEL))
    _, response = _answer(unary, inputs)
    code, text = error_of(response)
    assert code == "INVALID_ARG" and message in text
    assert len(served.pb.calls_to(C.LLM_MODEL)) == before


def test_a_called_models_error_code_is_kept(served, unary):
    served.pb.route(
        C.LLM_MODEL, lambda request: [InferenceResponse(error=TritonError("the llm says no", TritonError.UNAVAILABLE))]
    )
    _, response = _answer(unary, _inputs([5], 3))
    assert error_of(response) == ("UNAVAILABLE", "the llm says no")


def test_a_caller_cancelled_before_it_is_forwarded_gets_cancelled_without_calling_the_llm(served, unary):
    before = len(served.pb.calls_to(C.LLM_MODEL))
    request = unary.pb.request(_inputs([5], 3))
    request.cancel()
    unary.execute([request])
    assert error_of(request.sender.final()) == ("CANCELLED", "the request was cancelled by the client")
    assert len(served.pb.calls_to(C.LLM_MODEL)) == before


def test_a_caller_cancelled_while_the_llm_generates_stops_it_by_its_id_and_gets_cancelled(served, unary):
    stopped = threading.Event()
    stop_ids = []
    request = unary.pb.request(_inputs([5], 3))

    def llm(forwarded):
        if get_input_tensor_by_name(forwarded, C.STOP.name) is not None:
            stop_ids.append(forwarded.request_id())
            stopped.set()
            return [None]

        def generate():  # a token, then the client cancels; tokens go on until the stop arrives
            yield InferenceResponse(
                [Tensor(C.OUTPUT_IDS.name, np.array([[[7]]], np.int32)), Tensor(C.SEQUENCE_LENGTH.name, _one(1))]
            )
            request.cancel()
            while not stopped.is_set():
                yield InferenceResponse(
                    [Tensor(C.OUTPUT_IDS.name, np.array([[[8]]], np.int32)), Tensor(C.SEQUENCE_LENGTH.name, _one(1))]
                )
            yield None

        return generate()

    served.pb.route(C.LLM_MODEL, llm)
    unary.execute([request])
    assert error_of(request.sender.final()) == ("CANCELLED", "the request was cancelled by the client")
    forwarded = [r for r in served.pb.calls_to(C.LLM_MODEL) if get_input_tensor_by_name(r, C.STOP.name) is None]
    assert stop_ids == [forwarded[-1].request_id()]


def test_vad_gate_answers_no_speech_without_the_llm(exported_trained):
    gated = InProcess(exported_trained, [C.LLM_UNARY_MODEL], parameters={C.LLM_UNARY_MODEL: {"vad_gate": "true"}})
    try:
        request, response = _answer(gated[C.LLM_UNARY_MODEL], _inputs([5], C.NO_SPEECH_OUTPUT_LEN))
        assert _tokens(response) == [] and request.sender.flags == [FINAL]
        assert gated.pb.calls_to(C.LLM_MODEL) == []
    finally:
        gated.close()
