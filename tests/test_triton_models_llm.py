"""The CPU `llm` model in-process (fake pb_utils): unary and streaming answers, exactly one FINAL
flag, stop requests, bad input, and its Prometheus metrics."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from canary_triton import contract as C
from canary_triton.runtime.loaders import load_llm, load_serving_tokenizer
from canary_triton.triton_models.llm import LlmModel

from .conftest import LONG_GENERATION_TOKENS
from .fake_pb_utils import FINAL, MetricFamily, error_of, load_model


@pytest.fixture(scope="module")
def llm(exported_trained):
    threads = torch.get_num_threads()
    # cancellation asked every millisecond: each request's response thread asks between its tokens
    model = load_model(
        LlmModel, exported_trained / "model_repository", C.LLM_MODEL, parameters={"cancellation_check_period_ms": "1"}
    )
    torch.set_num_threads(threads)
    yield model
    model.finalize()


def _one(v, dt=np.int32):
    return np.array([[v]], dtype=dt)


def _request(m, ids, out_len, streaming=None, request_id="", end_id=None, **more):
    inputs = {
        C.INPUT_IDS.name: np.array([ids], np.int32),
        C.INPUT_LENGTHS.name: _one(len(ids)),
        C.REQUEST_OUTPUT_LEN.name: _one(out_len),
    }
    if end_id is not None:
        inputs[C.END_ID.name] = _one(end_id)
    if streaming is not None:
        inputs[C.STREAMING.name] = _one(streaming, np.bool_)
    inputs.update(more)
    return m.pb.request(inputs, request_id=request_id)


@pytest.fixture(scope="module")
def eos(exported_trained):
    return load_serving_tokenizer(exported_trained).ids.eos


@pytest.fixture(scope="module")
def merged(exported_trained):
    """The LoRA-merged Qwen3 the export wrote: what ``llm`` (base weights + the run-time adapter,
    the CPU default) must answer as."""
    return load_llm(exported_trained, "llm_merged")


def _greedy(model, ids, n, eos):
    """Reference: greedy decoding by full recompute with the same weights, up to (without) the end id."""
    out = []
    with torch.no_grad():
        for _ in range(n):
            token = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            if token == eos:
                break
            out.append(token)
    return out


def _tokens(response):
    got = response.outputs()
    n = int(got[C.SEQUENCE_LENGTH.name].reshape(-1)[0])
    assert got[C.OUTPUT_IDS.name].shape == (1, 1, n) and got[C.OUTPUT_IDS.name].dtype == np.int32
    return got[C.OUTPUT_IDS.name][0, 0].tolist()


PROMPT = [5, 17, 42, 99, 7]


def test_unary_request_answers_the_greedy_tokens_once_and_counts_them(llm, merged, eos):
    before = {r: llm.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome=r) for r in ("stop", "length")}
    tokens_before = llm.pb.metric("canary_llm_generated_tokens_total", model=C.LLM_MODEL)
    steps = {k: llm.pb.metric("canary_llm_steps_total", model=C.LLM_MODEL, kind=k) for k in ("prefill", "decode")}
    rows = {k: llm.pb.metric("canary_llm_step_rows_total", model=C.LLM_MODEL, kind=k) for k in ("prefill", "decode")}
    positions = llm.pb.metric("canary_llm_prefill_positions_total", model=C.LLM_MODEL)
    request = _request(llm, PROMPT, 6, end_id=eos)
    assert llm.execute([request]) is None  # decoupled: answered from the engine thread
    tokens = _tokens(request.sender.final())
    assert tokens == _greedy(merged, PROMPT, 6, eos)
    # Each pass is counted before its tokens are sent: one prefill of one row, then one row per decode step.
    assert llm.pb.metric("canary_llm_steps_total", model=C.LLM_MODEL, kind="prefill") == steps["prefill"] + 1
    assert llm.pb.metric("canary_llm_step_rows_total", model=C.LLM_MODEL, kind="prefill") == rows["prefill"] + 1
    assert llm.pb.metric("canary_llm_prefill_positions_total", model=C.LLM_MODEL) == positions + len(PROMPT)
    decode_steps = llm.pb.metric("canary_llm_steps_total", model=C.LLM_MODEL, kind="decode") - steps["decode"]
    assert decode_steps >= len(tokens) - 1
    assert (
        llm.pb.metric("canary_llm_step_rows_total", model=C.LLM_MODEL, kind="decode") - rows["decode"] == decode_steps
    )
    # counted by its finish reason: length when the 6 tokens were all generated, else the end id came
    reason = "length" if len(tokens) == 6 else "stop"
    llm.pb.wait_for_metrics(
        lambda: llm.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome=reason) == before[reason] + 1
    )
    other = "stop" if reason == "length" else "length"
    assert llm.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome=other) == before[other]
    assert llm.pb.metric("canary_llm_generated_tokens_total", model=C.LLM_MODEL) == tokens_before + len(tokens)
    assert llm.pb.metric("canary_llm_active_requests", model=C.LLM_MODEL) == 0


def test_streaming_sends_each_token_and_one_final_flag(llm, merged, eos):
    request = _request(llm, PROMPT, 6, streaming=True, end_id=eos)
    llm.execute([request])
    responses = request.sender.wait()
    flags = request.sender.flags
    assert flags[-1] == FINAL and all(f == 0 for f in flags[:-1])
    streamed = [t for r in responses if r is not None for t in _tokens(r)]
    assert streamed == _greedy(merged, PROMPT, 6, eos)


def test_the_metric_families_and_their_labels(llm):
    families = llm.pb.metric_families
    assert {n: f.kind for n, f in families.items()} == {
        "canary_llm_requests_total": MetricFamily.COUNTER,
        "canary_llm_generated_tokens_total": MetricFamily.COUNTER,
        "canary_llm_active_requests": MetricFamily.GAUGE,
        "canary_llm_steps_total": MetricFamily.COUNTER,
        "canary_llm_step_rows_total": MetricFamily.COUNTER,
        "canary_llm_prefill_positions_total": MetricFamily.COUNTER,
    }
    outcomes = {m.labels["outcome"] for m in families["canary_llm_requests_total"].metrics}
    assert outcomes == {"stop", "length", "cancelled", "aborted", "error", "rejected"}
    # The CPU default: base weights (shared with llm_base) plus the run-time ASR adapter.
    assert any(
        line[1].startswith(f"{C.LLM_MODEL}: llm_base + run-time ASR adapter (r=") and "LLM in float32" in line[1]
        for line in llm.pb.Logger.lines
    )


def test_bad_requests_are_rejected_with_invalid_arg_and_counted(llm):
    before = llm.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome="rejected")
    vocab = llm.embedding.num_embeddings
    bad = [_request(llm, [5, vocab + 3], 4), _request(llm, [5, 6], 0), llm.pb.request({})]
    llm.execute(bad)
    codes = [error_of(r.sender.final()) for r in bad]
    assert codes[0][0] == "INVALID_ARG" and f"ids must be in [0, {vocab})" in codes[0][1]
    assert codes[1][0] == "INVALID_ARG" and "request_output_len" in codes[1][1]
    assert codes[2] == ("INVALID_ARG", f"input '{C.INPUT_IDS.name}' is required")
    assert llm.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome="rejected") == before + 3


def test_a_stop_request_needs_an_id_and_answers_with_a_flag(llm):
    stop = {C.STOP.name: _one(True, np.bool_)}
    anonymous = _request(llm, [0], 1, **stop)
    named = _request(llm, [0], 1, request_id="not-in-flight", **stop)
    llm.execute([anonymous, named])
    assert error_of(anonymous.sender.final()) == (
        "INVALID_ARG",
        "input 'stop' needs the request id of the request to stop",
    )
    named.sender.wait()
    assert named.sender.sent == [(None, FINAL)]


def test_a_cancelled_request_leaves_the_engine_as_cancelled(llm):
    before = llm.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome="cancelled")
    request = _request(llm, PROMPT, llm.max_output_len)
    request.cancel()  # the client is gone before the engine takes it
    llm.execute([request])
    request.sender.wait()
    assert request.sender.flags[-1] == FINAL and request.sender.flags.count(FINAL) == 1
    llm.pb.wait_for_metrics(
        lambda: llm.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome="cancelled") == before + 1
    )


def test_a_failing_cancellation_check_neither_stops_the_engine_nor_the_request(llm, merged, eos):
    """request.is_cancelled() is an IPC round trip to the server; when it fails, the request goes
    on (a warning) and the engine keeps serving."""
    request = _request(llm, PROMPT, 6, end_id=eos, streaming=True)
    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("Failed to check the cancellation of the request")

    request.is_cancelled = broken
    llm.execute([request])
    responses = request.sender.wait()
    assert all(r is None or r.error() is None for r in responses)
    assert [t for r in responses if r is not None for t in _tokens(r)] == _greedy(merged, PROMPT, 6, eos)
    assert calls  # asked (between tokens, on the request's response thread), and it failed
    assert any(level == "warn" and "is_cancelled() failed" in m for level, m in llm.pb.Logger.lines)
    after = _request(llm, PROMPT, 3, end_id=eos)
    llm.execute([after])
    (response,) = after.sender.wait()
    assert _tokens(response) == _greedy(merged, PROMPT, 3, eos)


def test_a_send_that_hangs_cancels_its_own_request_and_the_other_rows_go_on(exported_random):
    """The engine never waits on a client: a response send that does not return within
    send_timeout_s cancels its request and frees its row; requests beside it are answered.
    tiny-random never emits its end id: the stuck request would run for thousands of tokens."""
    threads = torch.get_num_threads()
    model = load_model(
        LlmModel,
        exported_random / "model_repository",
        C.LLM_MODEL,
        parameters={"send_timeout_s": "0.5", "cancellation_check_period_ms": "1"},
    )
    torch.set_num_threads(threads)
    release = threading.Event()
    try:
        stuck = _request(model, PROMPT, LONG_GENERATION_TOKENS, streaming=True)
        send = stuck.sender.send

        def hanging(response=None, flags=0):  # the caller's stub is gone: the first send never returns
            assert release.wait(600), "released by the test"
            send(response, flags)

        stuck.sender.send = hanging
        model.execute([stuck])
        model.pb.wait_for_metrics(
            lambda: model.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome="cancelled") >= 1
        )
        assert model.batcher.active == 0  # its row is free although its send still hangs
        other = _request(model, PROMPT, 6)
        model.execute([other])
        (response,) = other.sender.wait()
        assert len(_tokens(response)) == 6
        assert any("did not complete within 0.5 s" in m for level, m in model.pb.Logger.lines if level == "warn")
    finally:
        release.set()
        model.finalize()


def test_a_request_cut_off_by_the_engine_stop_is_an_unavailable_error_counted_as_aborted(exported_random):
    """Unloading the model (finalize) while a request generates answers it with an error saying
    why, never with its tokens so far as if it had finished. tiny-random never emits its end id."""
    threads = torch.get_num_threads()
    model = load_model(LlmModel, exported_random / "model_repository", C.LLM_MODEL)
    torch.set_num_threads(threads)
    try:
        request = _request(model, PROMPT, LONG_GENERATION_TOKENS)  # unary: one answer, at its end
        model.execute([request])
        # it holds a row (the gauge is set when the engine admits it)
        model.pb.wait_for_metrics(lambda: model.pb.metric("canary_llm_active_requests", model=C.LLM_MODEL) == 1)
    finally:
        model.finalize()
    code, message = error_of(request.sender.final())
    assert code == "UNAVAILABLE" and "the request was not finished" in message
    model.pb.wait_for_metrics(
        lambda: model.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome="aborted") == 1
    )
    for reason in ("stop", "length", "cancelled", "error"):
        assert model.pb.metric("canary_llm_requests_total", model=C.LLM_MODEL, outcome=reason) == 0
