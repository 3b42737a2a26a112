"""The in-flight batcher's scheduler rules, on plain data (no torch, no model)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from canary_triton.contract import FinishReason
from canary_triton.cpu_llm.scheduler import OUTCOMES, CapacityError, Move, PlainRequest, Scheduler


def test_the_scheduler_imports_no_torch():
    code = "import sys, canary_triton.cpu_llm.scheduler; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_admission_fills_free_rows_first_come_first_served():
    s = Scheduler(max_rows=2, max_positions=100)
    reqs = [PlainRequest(prompt_len=5 + i, max_new_tokens=4) for i in range(3)]
    for r in reqs:
        s.add(r)
    adm = s.admit()
    assert adm.admitted == reqs[:2] and adm.dropped == [] and [r.row for r in reqs] == [0, 1, None]
    assert s.admit().admitted == []  # no free row
    s.on_token(reqs[0], 9)
    assert s.release(reqs[0]) == Move(src=1, dst=0, length=6)  # the last row fills the hole
    assert s.running == [reqs[1]] and reqs[1].row == 0 and reqs[0].row is None
    assert s.admit().admitted == [reqs[2]] and reqs[2].row == 1


def test_a_request_cancelled_while_waiting_takes_no_row():
    s = Scheduler(max_rows=4, max_positions=100)
    gone, kept = PlainRequest(3, 4, cancelled=lambda: True), PlainRequest(3, 4)
    s.add(gone)
    s.add(kept)
    adm = s.admit()
    assert adm.dropped == [gone] and adm.admitted == [kept] and kept.row == 0 and gone.row is None


def test_end_id_finishes_without_being_emitted_and_the_limit_finishes_after_emitting():
    s = Scheduler(max_rows=2, max_positions=100)
    a, b = PlainRequest(3, 2, end_id=0), PlainRequest(3, 2, end_id=0)
    s.add(a)
    s.add(b)
    s.admit()
    t = s.on_token(a, 0)
    assert (t.emit, t.finished) == (False, FinishReason.STOP) and a.generated == []
    assert s.on_token(b, 7).finished is None
    t = s.on_token(b, 8)
    assert (t.emit, t.finished) == (True, FinishReason.LENGTH) and b.generated == [7, 8]


def test_the_end_id_as_the_last_allowed_token_is_stop_not_length():
    s = Scheduler(max_rows=1, max_positions=100)
    r = PlainRequest(3, 2, end_id=0)
    s.add(r)
    s.admit()
    assert s.on_token(r, 7).finished is None
    t = s.on_token(r, 0)
    assert (t.emit, t.finished) == (False, FinishReason.STOP) and r.generated == [7]


def test_the_outcomes_are_the_finish_reasons_and_only_stop_and_length_are_answers():
    assert [str(o) for o in OUTCOMES] == ["stop", "length", "cancelled", "aborted", "error"]
    assert [o for o in OUTCOMES if o.ok] == [FinishReason.STOP, FinishReason.LENGTH]


def test_cancellation_is_seen_at_the_next_token():
    flag = {"on": False}
    s = Scheduler(max_rows=1, max_positions=100)
    r = PlainRequest(3, 50, cancelled=lambda: flag["on"])
    s.add(r)
    s.admit()
    assert s.on_token(r, 5).finished is None
    flag["on"] = True
    t = s.on_token(r, 6)
    assert (t.emit, t.finished) == (True, FinishReason.CANCELLED) and r.generated == [5, 6]


def test_capacity_a_request_that_cannot_fit_a_row_is_refused_with_the_limit():
    s = Scheduler(max_rows=2, max_positions=64)
    with pytest.raises(CapacityError, match="needs 65 positions; the LLM engine's limit is 64"):
        s.add(PlainRequest(prompt_len=60, max_new_tokens=5))
    with pytest.raises(CapacityError, match="empty"):
        s.add(PlainRequest(prompt_len=0, max_new_tokens=5))
    s.add(PlainRequest(prompt_len=59, max_new_tokens=5))  # exactly fits
    assert len(s.admit().admitted) == 1


def test_rows_stay_compact_through_any_order_of_finishing():
    s = Scheduler(max_rows=4, max_positions=100)
    reqs = [PlainRequest(10 + i, 8) for i in range(4)]
    for r in reqs:
        s.add(r)
    s.admit()
    for r in reqs:
        s.on_token(r, 1)
        s.on_token(r, 2)
    assert s.release(reqs[3]) is None  # the last row: nothing moves
    assert s.release(reqs[0]) == Move(src=2, dst=0, length=12 + 1)
    assert [r.row for r in s.running] == [0, 1] and s.running == [reqs[2], reqs[1]]
    with pytest.raises(ValueError):
        s.release(reqs[0])  # twice
    assert s.release_all() == [reqs[2], reqs[1]] and s.idle
