"""`canary_qwen_llm` (LLM mode) in-process (fake pb_utils) over the real `llm_base`: NeMo's
answer with the adapter off, sampling inputs forwarded, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import contract as C

from .fake_pb_utils import error_of, get_input_tensor_by_name
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
