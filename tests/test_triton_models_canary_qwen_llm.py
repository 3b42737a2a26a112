"""`canary_qwen_llm` (LLM mode) in-process (fake pb_utils) over the real `llm_base`: NeMo's
answer with the adapter off, sampling inputs forwarded, the finish reason, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import contract as C

from .fake_pb_utils import InferenceResponse, Tensor, error_of, get_input_tensor_by_name
from .inprocess import InProcess

TEXTS = ["What is the capital of France?", "Say hello."]


@pytest.fixture(scope="module")
def served(exported_trained):
    s = InProcess(exported_trained, [C.LLM_BASE_MODEL, C.LLM_MODE_MODEL])
    yield s
    s.close()


def _ask(s, text: bytes, **more):
    request = s.pb.request({C.TEXT_INPUT.name: np.array([[text]], dtype=np.object_), **more})
    assert s[C.LLM_MODE_MODEL].execute([request]) is None
    return request.sender.final()


def _answer(response) -> str:
    out = response.outputs()[C.TEXT_OUTPUT.name]
    assert out.shape == (1, 1) and out.dtype == np.object_
    return out[0, 0].decode("utf-8")


def test_equals_nemo_with_the_adapter_off(served, oracle_trained):
    want = [oracle_trained.decode(ids) for ids in oracle_trained.llm_generate(TEXTS, max_new_tokens=10)]
    got = [_answer(_ask(served, t.encode(), max_new_tokens=np.array([[10]], np.int32))) for t in TEXTS]
    assert got == want


def test_sampling_inputs_go_to_the_engine_and_a_seed_repeats(served):
    more = {
        C.TEMPERATURE.name: np.array([[0.9]], np.float32),
        C.TOP_P.name: np.array([[0.8]], np.float32),
        C.SEED.name: np.array([[42]], np.uint64),
        C.MAX_NEW_TOKENS.name: np.array([[8]], np.int32),
    }
    first, second = (_answer(_ask(served, b"Tell me a story.", **more)) for _ in range(2))
    assert first == second
    forwarded = served.pb.calls_to(C.LLM_BASE_MODEL)[-1]
    got = {
        n: get_input_tensor_by_name(forwarded, n).as_numpy()
        for n in (C.TEMPERATURE.name, C.RUNTIME_TOP_P.name, C.SEED.name, C.REQUEST_OUTPUT_LEN.name)
    }
    assert got[C.RUNTIME_TOP_P.name].dtype == np.float32 and got[C.SEED.name].dtype == np.uint64
    assert got[C.REQUEST_OUTPUT_LEN.name].tolist() == [[8]] and got[C.TEMPERATURE.name].shape == (1, 1)


def test_the_token_limit_is_the_engines(served):
    limit = served[C.LLM_MODE_MODEL].max_new_tokens
    code, message = error_of(_ask(served, b"hi", max_new_tokens=np.array([[limit + 1]], np.int32)))
    assert code == "INVALID_ARG" and f"it must be between 1 and {limit}" in message


def _finish_reason(response) -> str:
    out = response.outputs()[C.FINISH_REASON.name]
    assert out.shape == (1, 1) and out.dtype == np.object_
    return out[0, 0].decode("utf-8")


def test_an_answer_cut_by_max_new_tokens_finishes_with_length(served, oracle_trained):
    (ids,) = oracle_trained.llm_generate(["Say hello."], max_new_tokens=2)
    assert len(ids) == 2  # NeMo's answer is cut too: no end id in its first 2 tokens
    response = _ask(served, b"Say hello.", max_new_tokens=np.array([[2]], np.int32))
    assert (_answer(response), _finish_reason(response)) == (oracle_trained.decode(ids), "length")


def _llm_answering(tokens: list[int]):
    """A stand-in for ``llm_base`` (either profile's: ids and lengths only) that streams ``tokens``."""

    def respond(request):
        yield InferenceResponse(
            [
                Tensor(C.OUTPUT_IDS.name, np.asarray(tokens, np.int32).reshape(1, 1, -1)),
                Tensor(C.SEQUENCE_LENGTH.name, np.array([[len(tokens)]], np.int32)),
            ]
        )

    return respond


@pytest.mark.parametrize(
    "tokens,reason",
    [
        ([5, 6], "stop"),  # fewer than the limit: the end id ended it
        ([5, 6, 7, 8], "length"),  # the limit, and no end id: the limit cut it
        ([5, 6, 7, "eos"], "stop"),  # an engine that returns the end id: it ended exactly at the limit
    ],
)
def test_the_finish_reason_comes_from_the_tokens_and_the_limit(served, tokens, reason):
    model = served[C.LLM_MODE_MODEL]
    eos = model.tokenizer.ids.eos
    real = served.pb.routes[C.LLM_BASE_MODEL]
    served.pb.route(C.LLM_BASE_MODEL, _llm_answering([eos if t == "eos" else t for t in tokens]))
    try:
        response = _ask(served, b"hi", max_new_tokens=np.array([[4]], np.int32))
    finally:
        served.pb.route(C.LLM_BASE_MODEL, real)
    assert _finish_reason(response) == reason
