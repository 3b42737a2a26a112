"""The bases of the Triton models over the fake pb_utils (no export, no server): validate-each-
then-batch, the worker-thread models' answers and errors, responses and flags."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton.errors import InputError
from canary_triton.model_params import BlsParams
from canary_triton.triton_models.adapter import (
    CallerCancelled,
    ForwardedError,
    first_string,
    scalar_array,
    string_array,
)
from canary_triton.triton_models.base import BatchedModel, PythonModel, ThreadedModel

from .fake_pb_utils import FINAL, ClosedSender, FakePbUtils, TritonError, error_of


class Doubler(BatchedModel):
    """x -> 2x for each request; a negative x is bad input; the batch fails when told to."""

    fail_batch = False

    def check(self, request):
        x = int(self.input(request, "x").reshape(-1)[0])
        if x < 0:
            raise InputError(f"input 'x' is {x}; it must be >= 0")
        return x

    def run(self, items):
        self.batches.append(list(items))
        if self.fail_batch:
            raise RuntimeError("the batch fell over")
        return [[self.pb.Tensor("y", scalar_array(2 * x))] for x in items]


@pytest.fixture
def doubler():
    m = Doubler(FakePbUtils())
    m.batches = []
    return m


def _x(m, v):
    return m.pb.request({"x": scalar_array(v)})


def test_bad_requests_fail_alone_and_the_rest_run_as_one_batch(doubler):
    out = doubler.execute([_x(doubler, 1), _x(doubler, -2), doubler.pb.request({}), _x(doubler, 5)])
    assert doubler.batches == [[1, 5]]
    assert out[0].outputs()["y"].tolist() == [[2]] and out[3].outputs()["y"].tolist() == [[10]]
    assert error_of(out[1]) == ("INVALID_ARG", "input 'x' is -2; it must be >= 0")
    assert error_of(out[2]) == ("INVALID_ARG", "input 'x' is required")


def test_no_valid_request_runs_no_batch_and_a_batch_failure_fails_each(doubler):
    assert [error_of(r)[0] for r in doubler.execute([_x(doubler, -1)])] == ["INVALID_ARG"]
    assert doubler.batches == []
    doubler.fail_batch = True
    out = doubler.execute([_x(doubler, 1), _x(doubler, -1), _x(doubler, 2)])
    assert [error_of(r) for r in out] == [
        ("INTERNAL", "the batch fell over"),
        ("INVALID_ARG", "input 'x' is -1; it must be >= 0"),
        ("INTERNAL", "the batch fell over"),
    ]


class Echo(ThreadedModel):
    def initialize(self, args):
        self.start_workers(BlsParams(max_inflight=2))

    def serve(self, request, sender):
        text = first_string(self.pb.get_input_tensor_by_name(request, "text"))
        if text == "forwarded":
            raise ForwardedError("the called model says no", TritonError.UNAVAILABLE)
        if text == "cancelled":
            raise CallerCancelled("the request was cancelled by the client")
        if text == "bad":
            raise InputError("input 'text' is bad")
        if text == "boom":
            raise KeyError("boom")
        for word in text.split()[:-1]:
            self.send(sender, [self.string_tensor("word", word)], final=False)
        self.send(sender, [self.string_tensor("word", text.split()[-1])])


@pytest.mark.parametrize(
    "text,want",
    [
        ("forwarded", ("UNAVAILABLE", "the called model says no")),
        ("cancelled", ("CANCELLED", "the request was cancelled by the client")),
        ("bad", ("INVALID_ARG", "input 'text' is bad")),
        ("boom", ("INTERNAL", "'boom'")),
    ],
)
def test_what_serve_raises_is_the_final_answer_with_its_code(text, want):
    m = Echo(FakePbUtils())
    m.initialize({})
    request = m.pb.request({"text": string_array(text)})
    assert m.execute([request]) is None
    assert error_of(request.sender.final()) == want
    m.finalize()


def test_pieces_then_one_final_flag():
    m = Echo(FakePbUtils())
    m.initialize({})
    requests = [m.pb.request({"text": string_array(t)}) for t in ("a b c", "d")]
    m.execute(requests)
    words = [[first_string(r.output_tensors()[0]) for r in q.sender.wait()] for q in requests]
    assert words == [["a", "b", "c"], ["d"]]
    assert requests[0].sender.flags == [0, 0, FINAL] and requests[1].sender.flags == [FINAL]
    m.finalize()


def test_flag_only_final_and_nothing_after_it():
    m = PythonModel(FakePbUtils())
    sender = m.pb.request({}).sender
    m.send(sender, [m.string_tensor("t", "x")], final=False)
    m.send(sender)
    assert sender.flags == [0, FINAL] and sender.sent[1][0] is None
    with pytest.raises(ClosedSender):
        m.send_error(sender, ValueError("late"))


def test_string_tensor_is_one_utf8_bytes_value():
    m = PythonModel(FakePbUtils())
    t = m.string_tensor("t", "héllo")
    assert t.as_numpy().shape == (1, 1) and t.as_numpy().dtype == np.object_
    assert t.as_numpy()[0, 0] == "héllo".encode() and first_string(t) == "héllo"
