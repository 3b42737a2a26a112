"""The in-flight batcher in-process: batch-exact, cancellation frees slots, finish reasons counted."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from canary_triton.contract import FinishReason
from canary_triton.cpu_llm.batcher import CancelRegistry, ContinuousBatcher, EngineStopped, GenerationRequest
from canary_triton.cpu_llm.runner import CACHE_BLOCK
from canary_triton.runtime.loaders import load_llm, load_lora


@pytest.fixture(scope="module")
def llm(exported_random):
    return load_llm(exported_random, "llm_merged")


class Collect:
    def __init__(self):
        self.tokens, self.done, self.outcome = [], threading.Event(), None

    def on_tokens(self, tokens, done):
        self.tokens.extend(tokens)
        if done:
            self.done.set()

    def on_finish(self, outcome, n):
        self.outcome = (outcome, n)


def _request(llm, ids, n, collect, is_cancelled=lambda: False, end_id=-1):
    with torch.no_grad():
        embeds = llm.get_input_embeddings()(torch.tensor(ids))
    return GenerationRequest(
        embeds=embeds,
        max_new_tokens=n,
        end_id=end_id,
        on_tokens=collect.on_tokens,
        is_cancelled=is_cancelled,
        on_finish=collect.on_finish,
    )


def test_batched_equals_one_at_a_time_and_slots_are_released(llm):
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13], [3], [20, 21]]
    batcher = ContinuousBatcher(llm, max_batch=4).start()
    try:
        alone = []
        for p in prompts:
            c = Collect()
            batcher.submit(_request(llm, p, 12, c))
            assert c.done.wait(60)
            alone.append(c.tokens)
        together = [Collect() for _ in prompts]
        for p, c, n in zip(prompts, together, (12, 5, 12, 9)):
            batcher.submit(_request(llm, p, n, c))
        for c in together:
            assert c.done.wait(60)
        assert [c.tokens for c in together] == [alone[0], alone[1][:5], alone[2], alone[3][:9]]
        assert [c.outcome for c in together] == [
            ("length", 12),
            ("length", 5),
            ("length", 12),
            ("length", 9),
        ]
        assert batcher.max_rows_seen > 1 and batcher.active == 0
        assert batcher.outcomes == {"stop": 0, "length": 8, "cancelled": 0, "aborted": 0, "error": 0}
    finally:
        batcher.stop()


def test_the_end_id_finishes_with_stop_and_the_limit_with_length(llm):
    """``stop``: the end id was generated (not emitted); ``length``: the output limit cut it."""
    batcher = ContinuousBatcher(llm, max_batch=2).start()
    try:
        free = Collect()
        batcher.submit(_request(llm, [5, 6, 7], 12, free))
        assert free.done.wait(60) and free.outcome == ("length", 12)
        # the first token that did not come before: as the end id, generation stops just before it
        k = next(i for i, t in enumerate(free.tokens) if i and t not in free.tokens[:i])
        ended = Collect()
        batcher.submit(_request(llm, [5, 6, 7], 12, ended, end_id=free.tokens[k]))
        assert ended.done.wait(60) and ended.tokens == free.tokens[:k] and ended.outcome == ("stop", k)
        assert ended.outcome[0] is FinishReason.STOP and free.outcome[0] is FinishReason.LENGTH
        assert batcher.outcomes == {"stop": 1, "length": 1, "cancelled": 0, "aborted": 0, "error": 0}
    finally:
        batcher.stop()


def test_cancellation_stops_generation_and_frees_the_slot(llm):
    batcher = ContinuousBatcher(llm, max_batch=2).start()
    try:
        flag = threading.Event()
        long = Collect()

        def cancel_after_10():  # checked once per generated token, as the served model does
            if len(long.tokens) >= 10:
                flag.set()
            return flag.is_set()

        batcher.submit(_request(llm, [5, 6, 7], 500, long, cancel_after_10))
        assert long.done.wait(60)
        assert long.outcome == ("cancelled", 11) and len(long.tokens) == 11  # stops at the next token
        # a request cancelled while it waited is never prefilled
        queued = Collect()
        batcher.submit(_request(llm, [5, 6, 7], 500, queued, lambda: True))
        assert queued.done.wait(60) and queued.tokens == [] and queued.outcome == ("cancelled", 0)
        # both slots are free: two full requests run side by side
        pair = [Collect(), Collect()]
        for c in pair:
            batcher.submit(_request(llm, [8, 9], 6, c))
        assert all(c.done.wait(60) for c in pair) and [len(c.tokens) for c in pair] == [6, 6]
        assert batcher.active == 0
        assert batcher.outcomes == {"stop": 0, "length": 2, "cancelled": 2, "aborted": 0, "error": 0}
        assert batcher.tokens_generated == 11 + 12
    finally:
        batcher.stop()


def test_a_bad_request_fails_alone(llm):
    batcher = ContinuousBatcher(llm, max_batch=2).start()
    try:
        good, bad = Collect(), Collect()
        errors = []
        bad_req = _request(llm, [5, 6], 4, bad)
        bad_req.embeds = torch.zeros(2, 3)  # wrong hidden size: prefill fails
        bad_req.on_error = errors.append
        batcher.submit(bad_req)
        batcher.submit(_request(llm, [5, 6], 4, good))
        assert good.done.wait(60) and len(good.tokens) == 4
        assert len(errors) == 1 and bad.outcome == ("error", 0) and batcher.active == 0
    finally:
        batcher.stop()


def test_requests_admitted_together_are_prefilled_as_one_batch_and_equal_alone(llm):
    prompts = [[5, 6, 7, 8, 9, 10, 11], [9], [3, 4, 30, 31], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 40, 41]]
    batcher = ContinuousBatcher(llm, max_batch=4)
    together = [Collect() for _ in prompts]
    for p, c in zip(prompts, together):  # queued before the engine starts: admitted at one boundary
        batcher.submit(_request(llm, p, 10, c))
    batcher.start()
    try:
        assert all(c.done.wait(60) for c in together)
        assert batcher.prefills == 1 and batcher.max_rows_seen == 4
        for p, c in zip(prompts, together):
            alone = Collect()
            batcher.submit(_request(llm, p, 10, alone))
            assert alone.done.wait(60)
            assert c.tokens == alone.tokens and len(alone.tokens) == 10
        # one block per row so far; a longer prompt grows the cache once, to two blocks
        assert batcher.runner.cache.capacity == CACHE_BLOCK and batcher.runner.cache.reallocations == 0
        long = Collect()
        batcher.submit(_request(llm, [5 + i % 50 for i in range(CACHE_BLOCK + 20)], 3, long))
        assert long.done.wait(60) and len(long.tokens) == 3
        assert batcher.runner.cache.peak_capacity == 2 * CACHE_BLOCK and batcher.runner.cache.reallocations == 1
    finally:
        batcher.stop()


def test_a_request_above_the_row_capacity_fails_alone_with_the_limit(llm):
    batcher = ContinuousBatcher(llm, max_batch=2, max_positions=16).start()
    try:
        big, small = Collect(), Collect()
        errors = []
        req = _request(llm, list(range(5, 15)), 7, big)  # 10 + 7 = 17 positions > 16
        req.on_error = errors.append
        batcher.submit(req)
        batcher.submit(_request(llm, [5, 6], 4, small))
        assert small.done.wait(60) and len(small.tokens) == 4
        assert big.outcome == ("error", 0) and "needs 17 positions; the LLM engine's limit is 16" in str(errors[0])
    finally:
        batcher.stop()


def test_one_set_of_weights_serves_both_modes_in_one_batch(llm, exported_random):
    """Base weights + the run-time LoRA: ASR rows (adapter) give the merged model's tokens,
    LLM-mode rows the base model's, each the same alone as mixed in one batch."""
    base = load_llm(exported_random, "llm_base")
    lora = load_lora(exported_random)
    assert lora is not None and lora.scale == 3.0 and set(lora.layers[0]) == {"q_proj", "v_proj"}
    prompts = [[5, 6, 7, 8], [9, 10, 11], [3, 4, 30], [20, 21, 22, 23, 24]]
    modes = [True, False, True, False]

    def run(model, reqs, lora=None):
        batcher = ContinuousBatcher(model, max_batch=4, lora=lora)
        outs = []
        for p, adapter in reqs:
            c = Collect()
            r = _request(model, p, 8, c)
            r.adapter = adapter
            batcher.submit(r)
            outs.append(c)
        batcher.start()
        try:
            assert all(c.done.wait(60) for c in outs)
        finally:
            batcher.stop()
        return [c.tokens for c in outs]

    merged_alone = [run(llm, [(p, True)])[0] for p in prompts]
    base_alone = [run(base, [(p, False)])[0] for p in prompts]
    mixed = run(base, list(zip(prompts, modes)), lora)
    want = [m if a else b for m, b, a in zip(merged_alone, base_alone, modes)]
    assert mixed == want
    assert merged_alone != base_alone  # the adapter changes the output
    for p, adapter, w in zip(prompts, modes, want):
        assert run(base, [(p, adapter)], lora) == [w]


def test_cancel_registry_stops_only_requests_in_flight_so_ids_can_be_reused():
    reg = CancelRegistry()
    assert not reg.cancel("a") and not reg.is_cancelled("a")  # nothing in flight with that id
    reg.register("a")
    reg.register("b")
    assert reg.cancel("a") and reg.is_cancelled("a") and not reg.is_cancelled("b") and not reg.is_cancelled(None)
    reg.release("a")
    reg.register("a")  # the same id again, after the stopped request finished: not stopped
    assert not reg.is_cancelled("a")
    reg.register("b")  # two in flight with one id: a stop stops both, each release counts
    assert reg.cancel("b")
    reg.release("b")
    assert reg.is_cancelled("b")
    reg.release("b")
    assert not reg.is_cancelled("b") and not reg.cancel("b")


def test_the_engine_thread_runs_below_the_callers_priority(llm):
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    batcher = ContinuousBatcher(llm, max_batch=1, nice=5).start()
    try:
        c = Collect()
        batcher.submit(_request(llm, [5, 6, 7], 3, c))
        assert c.done.wait(60) and c.outcome == ("length", 3)
        assert batcher.running_nice == min(19, before + 5)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # the caller keeps its own
    finally:
        batcher.stop()


def test_an_idle_engine_gives_back_a_cache_a_long_request_grew(llm):
    batcher = ContinuousBatcher(llm, max_batch=2).start()
    try:
        long = Collect()
        batcher.submit(_request(llm, [5 + i % 50 for i in range(2 * CACHE_BLOCK + 20)], 3, long))
        assert long.done.wait(60) and len(long.tokens) == 3
        # The batcher is idle once the long request is done; it shrinks before it takes the next one.
        short = Collect()
        batcher.submit(_request(llm, [5, 6, 7], 3, short))
        assert short.done.wait(60) and len(short.tokens) == 3
        cache = batcher.runner.cache
        assert cache.peak_capacity == 4 * CACHE_BLOCK and cache.reallocations == 1
        assert cache.shrinks == 1 and cache.capacity == CACHE_BLOCK  # the short one fit in one block
        assert cache.allocated_rows == 1
        assert cache.nbytes == cache.shape.kv_bytes_per_position(cache.dtype) * CACHE_BLOCK  # one row, one block
    finally:
        batcher.stop()


def test_the_cache_grows_its_rows_with_the_requests_in_flight(llm):
    batcher = ContinuousBatcher(llm, max_batch=8)
    together = [Collect() for _ in range(3)]
    for i, c in enumerate(together):  # queued before the engine starts: admitted at one boundary
        batcher.submit(_request(llm, [5 + i, 6, 7], 4, c))
    batcher.start()
    try:
        assert all(c.done.wait(60) for c in together)
        cache = batcher.runner.cache
        assert cache.peak_rows == 4 and cache.row_growths == 1  # 3 rows: the next power of two, not all 8
    finally:
        batcher.stop()


def test_an_engine_step_that_fails_fails_its_requests_and_the_engine_goes_on(llm, monkeypatch):
    """Whatever goes wrong outside a prefill or decode (the scheduler, a cache move) fails the
    requests in flight with the error; the engine thread lives and serves the next request."""
    batcher = ContinuousBatcher(llm, max_batch=2)
    admit = batcher.scheduler.admit
    failures = [RuntimeError("a broken scheduler step")]

    def failing_once():
        if failures:
            raise failures.pop()
        return admit()

    monkeypatch.setattr(batcher.scheduler, "admit", failing_once)
    batcher.start()
    try:
        first, errors = Collect(), []
        req = _request(llm, [5, 6], 4, first)
        req.on_error = lambda e: (errors.append(e), first.done.set())
        batcher.submit(req)
        assert first.done.wait(60) and [str(e) for e in errors] == ["a broken scheduler step"]
        assert first.outcome == ("error", 0) and batcher.active == 0
        second = Collect()
        batcher.submit(_request(llm, [5, 6], 4, second))
        assert second.done.wait(60) and len(second.tokens) == 4 and second.outcome == ("length", 4)
        assert batcher.outcomes == {"stop": 0, "length": 1, "cancelled": 0, "aborted": 0, "error": 1}
    finally:
        batcher.stop()


def test_stopping_the_engine_aborts_every_request_it_holds_with_an_error_never_as_an_answer(llm):
    """A request cut off by the engine's stop (model unloaded, server shutting down) gets an
    error saying why, running or queued; a submit after stop() is refused, never left unanswered."""
    batcher = ContinuousBatcher(llm, max_batch=1).start()
    running, queued = Collect(), Collect()
    errors: dict[str, Exception] = {}
    started = threading.Event()

    def watch_tokens(collect, name):
        def on_tokens(tokens, done):
            collect.on_tokens(tokens, done)
            if len(collect.tokens) >= 3:
                started.set()

        return on_tokens

    for c, name in ((running, "running"), (queued, "queued")):
        req = _request(llm, [5, 6, 7], 1500, c)
        req.on_tokens = watch_tokens(c, name)
        req.on_error = lambda e, c=c, n=name: (errors.__setitem__(n, e), c.done.set())
        batcher.submit(req)
    assert started.wait(60)  # the first holds the only row, the second waits for it
    assert batcher.stop(timeout=60)
    assert running.done.wait(60) and queued.done.wait(60)
    assert running.outcome[0] == "aborted" and 3 <= running.outcome[1] < 1500
    assert queued.outcome == ("aborted", 0)
    assert isinstance(errors["running"], EngineStopped) and "not finished" in str(errors["running"])
    assert "0 of at most 1500 tokens" in str(errors["queued"])
    assert batcher.outcomes["stop"] == batcher.outcomes["length"] == 0 and batcher.outcomes["aborted"] == 2
    with pytest.raises(EngineStopped, match="stopping"):
        batcher.submit(_request(llm, [5], 3, Collect()))
