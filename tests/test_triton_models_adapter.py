"""canary_triton/triton_models/adapter.py, in-process: the helpers the thin model.py files share, against
a minimal stand-in for ``triton_python_backend_utils`` (only what these helpers touch; the BLS
calls are answered by a per-test ``models`` table)."""

from __future__ import annotations

import json
import threading
import weakref
from contextlib import closing, nullcontext
from types import SimpleNamespace

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.errors import CanaryTritonError, InputError
from canary_triton.model_params import ProjectorParams
from canary_triton.triton_models import adapter as triton_adapter
from canary_triton.triton_models.adapter import (
    CallerCancelled,
    ForwardedError,
    artifacts_dir,
    bls_error,
    error_response,
    forward_tokens,
    input_array,
    model_parameters,
    pad_stack,
    read_params,
    send_cancel,
    stop_request_inputs,
    unary_call,
)

from .fake_pb_utils import InferenceResponse, Tensor, TritonError, get_output_tensor_by_name

WAIT_S = 60.0  # a bound against a hang, not a speed target


# -- pb_utils: the shared fake's tensors, errors and responses, with a small BLS router ---------
class FakePbUtils:
    """``models[name](request)`` answers a BLS request: a response (unary) or an iterable of them
    (decoupled); every request sent is kept in ``sent``."""

    TritonError, InferenceResponse, Tensor = TritonError, InferenceResponse, Tensor

    def __init__(self, **models):
        self.models, self.sent = models, []
        pb = self

        class InferenceRequest:
            def __init__(self, model_name, inputs, requested_output_names, request_id=""):
                self.model_name, self.inputs = model_name, list(inputs)
                self.requested_output_names, self.request_id = list(requested_output_names), request_id

            def input(self, name):
                return next(t for t in self.inputs if t.name() == name).as_numpy()

            def exec(self, decoupled=False):
                pb.sent.append(self)
                return pb.models[self.model_name](self)

        self.InferenceRequest = InferenceRequest

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return request.tensors.get(name)

    get_output_tensor_by_name = staticmethod(get_output_tensor_by_name)


def tokens(ids: list[int], length: int | None = None) -> InferenceResponse:
    """One response of the decoupled llm: output_ids [1, 1, L] and sequence_length [1, 1]."""
    return InferenceResponse(
        [
            Tensor(C.OUTPUT_IDS.name, np.array([[ids]], np.int32)),
            Tensor(C.SEQUENCE_LENGTH.name, np.array([[len(ids) if length is None else length]])),
        ]
    )


FINAL = InferenceResponse()  # the flag-only final response: no tensors


# -- parameters, errors, inputs --------------------------------------------------------------
def test_model_parameters_and_the_artifacts_folder(tmp_path):
    config = {"parameters": {"artifacts": {"string_value": "../../export"}, "threads": {"string_value": "2"}}}
    args = {"model_config": json.dumps(config), "model_repository": str(tmp_path / "repo" / "encoder")}
    assert model_parameters(args) == {"artifacts": "../../export", "threads": "2"}
    params = read_params({**args, "model_name": "projector"}, ProjectorParams)
    assert params == ProjectorParams(artifacts="../../export", threads=2)
    assert artifacts_dir(args, params) == (tmp_path / "export").resolve()
    assert model_parameters({"model_config": "{}"}) == {}
    config["parameters"]["threads"] = {"string_value": "two"}
    with pytest.raises(CanaryTritonError, match="^model projector: parameter threads is 'two'; expected an integer$"):
        read_params({**args, "model_config": json.dumps(config), "model_name": "projector"}, ProjectorParams)


@pytest.mark.parametrize(
    "exc,code",
    [
        (InputError("input 'audio' is empty"), TritonError.INVALID_ARG),
        (ValueError("bad value"), TritonError.INVALID_ARG),
        (RuntimeError("engine died"), TritonError.INTERNAL),
    ],
)
def test_a_clients_mistake_is_invalid_arg_anything_else_internal(exc, code):
    r = error_response(FakePbUtils(), exc)
    assert r.output_tensors() == [] and r.error().code() == code and r.error().message() == str(exc)


def test_input_array_required_and_optional():
    pb = FakePbUtils()
    request = SimpleNamespace(tensors={"audio": Tensor("audio", np.ones((1, 3), np.float32))})
    assert input_array(pb, request, "audio").shape == (1, 3)
    assert input_array(pb, request, "max_new_tokens", optional=True) is None
    with pytest.raises(InputError, match="input 'max_new_tokens' is required"):
        input_array(pb, request, "max_new_tokens")


def test_pad_stack_right_pads_with_zeros_along_the_axis():
    a, b = np.ones((2, 3), np.float32), np.full((2, 1), 5.0, np.float32)
    out = pad_stack([a, b], axis=1)
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    assert np.array_equal(out[0], a) and np.array_equal(out[1], [[5, 0, 0], [5, 0, 0]])
    assert pad_stack([np.ones((1, 4)), np.ones((3, 4))], axis=0).shape == (2, 3, 4)


# -- BLS errors ------------------------------------------------------------------------------
def test_bls_error_keeps_the_called_models_code_and_answers_cancelled():
    pb = FakePbUtils()
    assert (
        bls_error(pb, ForwardedError("llm: too long", TritonError.INVALID_ARG)).error().code()
        == TritonError.INVALID_ARG
    )
    assert bls_error(pb, ForwardedError("no code", None)).error().code() == TritonError.INTERNAL
    r = bls_error(pb, CallerCancelled("the request was cancelled by the client"))
    assert r.error().code() == TritonError.CANCELLED and "cancelled" in r.error().message()
    assert bls_error(pb, InputError("input 'x' bad")).error().code() == TritonError.INVALID_ARG


def test_bls_error_without_a_cancelled_code_falls_back_to_internal():
    # a Triton release whose TritonError has no CANCELLED code
    pb = FakePbUtils()

    class NoCancelled(Exception):
        INTERNAL, INVALID_ARG = TritonError.INTERNAL, TritonError.INVALID_ARG

        def __init__(self, message: str, code: int = TritonError.INTERNAL):
            super().__init__(message)
            self._message, self._code = message, code

        def message(self) -> str:
            return self._message

        def code(self) -> int:
            return self._code

    pb.TritonError = NoCancelled
    assert not hasattr(pb.TritonError, "CANCELLED")
    r = bls_error(pb, CallerCancelled("cancelled"))
    assert r.error().code() == TritonError.INTERNAL and r.error().message() == "cancelled"


def test_unary_call_returns_the_outputs_by_name_or_raises_the_models_error():
    pb = FakePbUtils(
        postprocessor=lambda req: InferenceResponse([Tensor("transcript", np.array([b"hi"], object))]),
        broken=lambda req: InferenceResponse(error=TritonError("input 'output_ids' bad", TritonError.INVALID_ARG)),
    )
    out = unary_call(pb, "postprocessor", [Tensor("output_ids", np.zeros((1, 1, 2)))], ["transcript"])
    assert out["transcript"].as_numpy().tolist() == [b"hi"]
    assert pb.sent[0].requested_output_names == ["transcript"] and pb.sent[0].input("output_ids").shape == (1, 1, 2)
    with pytest.raises(ForwardedError) as e:
        unary_call(pb, "broken", [], ["transcript"])
    assert str(e.value) == "input 'output_ids' bad" and e.value.code == TritonError.INVALID_ARG


# -- forwarding to the decoupled llm ---------------------------------------------------------
class Caller:
    """The request being served, as forward_tokens asks it whether it was cancelled; ``asked``
    counts the asks."""

    def __init__(self):
        self.cancelled = threading.Event()
        self.asked = 0

    def is_cancelled(self) -> bool:
        self.asked += 1
        return self.cancelled.is_set()


def test_forward_tokens_yields_each_responses_valid_ids_and_reshapes_scalars():
    pb = FakePbUtils(llm=lambda req: iter([tokens([11, 12, 0], length=2), tokens([13]), FINAL]))
    table = Tensor(C.PROMPT_EMBEDDING_TABLE.name, np.zeros((2, 3, 4), np.float32))
    inputs = [
        Tensor(C.INPUT_IDS.name, np.array([[1, 2], [3, 4]], np.int32)),
        Tensor(C.INPUT_LENGTHS.name, np.array([2, 2], np.int32)),  # [batch] as `reshape: []` delivers it
        Tensor(C.REQUEST_OUTPUT_LEN.name, np.array([[8], [8]], np.int32)),
        Tensor(C.STREAMING.name, np.array([[False]])),  # a caller's own flag: the forwarder sets it
        table,
    ]
    assert list(forward_tokens(pb, "llm", inputs, Caller())) == [[11, 12], [13]]
    (req,) = pb.sent
    assert req.model_name == "llm" and len(req.request_id) == 32  # a unique id: a stop request names it
    assert req.requested_output_names == [C.OUTPUT_IDS.name, C.SEQUENCE_LENGTH.name]
    assert req.input(C.INPUT_LENGTHS.name).shape == (2, 1)  # the called model wants [batch, 1]
    assert req.input(C.REQUEST_OUTPUT_LEN.name).shape == (2, 1)  # already [batch, 1]: as it was
    assert req.input(C.INPUT_IDS.name).shape == (2, 2)  # not a scalar input: untouched
    assert table in req.inputs  # the table is passed on as it is (it may be BF16 on the GPU)
    # always streaming (the caller's cancellation is seen while the llm generates), set once
    assert [t.name() for t in req.inputs].count(C.STREAMING.name) == 1
    assert req.input(C.STREAMING.name).tolist() == [[True]]


def test_forward_tokens_raises_the_llms_error_with_its_code():
    def llm(req):
        yield tokens([5])
        yield InferenceResponse(error=TritonError("input 'request_output_len' is 9999", TritonError.INVALID_ARG))

    gen = forward_tokens(FakePbUtils(llm=llm), "llm", [], Caller())
    assert next(gen) == [5]
    with pytest.raises(ForwardedError) as e:
        next(gen)
    assert e.value.code == TritonError.INVALID_ARG and "9999" in str(e.value)


def test_a_called_models_full_queue_comes_back_unavailable_whatever_code_it_carried():
    """Triton 2.51 answers a decoupled BLS request refused by the called model's queue with
    INTERNAL; the refusal is UNAVAILABLE (retry later) for the client, as at the entrance."""
    refusal = "Model llm - Error when running inference: [request id: 1f] " + C.QUEUE_FULL_MESSAGE
    gen = forward_tokens(
        FakePbUtils(llm=lambda req: iter([InferenceResponse(error=TritonError(refusal, TritonError.INTERNAL))])),
        "llm",
        [],
        Caller(),
    )
    with pytest.raises(ForwardedError) as e:
        next(gen)
    assert e.value.code == TritonError.UNAVAILABLE and str(e.value) == refusal
    pb = FakePbUtils(projector=lambda req: InferenceResponse(error=TritonError(refusal, TritonError.INTERNAL)))
    with pytest.raises(ForwardedError) as e:
        unary_call(pb, "projector", [], ["prompt_embedding_table"])
    assert e.value.code == TritonError.UNAVAILABLE
    assert bls_error(pb, e.value).error().code() == TritonError.UNAVAILABLE


def test_the_stop_request_has_the_backends_required_tensors_and_stop_true():
    inputs = {t.name(): t.as_numpy() for t in stop_request_inputs(FakePbUtils())}
    assert inputs.keys() == {C.INPUT_IDS.name, C.INPUT_LENGTHS.name, C.REQUEST_OUTPUT_LEN.name, C.STOP.name}
    assert inputs[C.STOP.name].dtype == np.bool_ and inputs[C.STOP.name].tolist() == [[True]]
    assert all(a.shape == (1, 1) for a in inputs.values())
    pb = FakePbUtils(llm=lambda req: iter([FINAL]))
    held = send_cancel(pb, "llm", "abc")
    (req,) = pb.sent
    assert req.model_name == "llm" and req.request_id == "abc" and req.input(C.STOP.name).tolist() == [[True]]
    assert len(held) == 1 and list(held[0]) == []  # its responses, read to the end, for the caller to hold


class StoppableLlm:
    """A decoupled llm that generates ``[1]``, ``[2]``, ... until a stop request names its id,
    then sends its final response (as the CPU llm and TensorRT-LLM do at the next token)."""

    def __init__(self, tokens_before_stop: int = 1000):
        self.stopped = threading.Event()
        self.stop_ids: list[str] = []
        self.limit = tokens_before_stop

    def __call__(self, req):
        if any(t.name() == C.STOP.name for t in req.inputs):
            self.stop_ids.append(req.request_id)
            self.stopped.set()
            return iter([FINAL])

        def generate():
            for i in range(1, self.limit + 1):
                if self.stopped.is_set():
                    break
                yield tokens([i])
            yield FINAL

        return generate()


def test_a_cancelled_caller_stops_the_forwarded_request_by_its_id_and_reads_it_to_its_end():
    llm, caller = StoppableLlm(), Caller()
    pb = FakePbUtils(llm=llm)
    gen = forward_tokens(pb, "llm", [Tensor(C.INPUT_IDS.name, np.array([[1]], np.int32))], caller, check_period_s=0)
    assert next(gen) == [1]
    caller.cancelled.set()
    with pytest.raises(CallerCancelled):
        next(gen)
    key = pb.sent[0].request_id
    assert llm.stop_ids == [key]  # the stop request named the forwarded request


def test_the_caller_is_asked_at_most_once_per_period_on_the_forwarding_thread():
    pb, caller = FakePbUtils(llm=lambda req: iter([tokens([i]) for i in range(50)] + [FINAL])), Caller()
    assert len(list(forward_tokens(pb, "llm", [], caller, check_period_s=3600))) == 50
    assert caller.asked == 2  # no period passed: once before forwarding, then the barrier after the last response
    caller = Caller()
    list(
        forward_tokens(
            FakePbUtils(llm=lambda req: iter([tokens([i]) for i in range(50)] + [FINAL])), "llm", [], caller, 0
        )
    )
    # period 0: before forwarding, at least once per response (50 tokens and the final; more if a
    # response was slow to come: the wait is bounded by the period too), the barrier
    assert caller.asked >= 53


def test_a_generator_closed_early_stops_the_forwarded_request_and_reads_it_to_its_end():
    """The caller stopped reading (an error of its own): the generation nobody reads is stopped
    by its id, and its responses are read to the end (an iterator left unfinished would stay in
    the stub's map for ever)."""
    llm, caller = StoppableLlm(), Caller()
    pb = FakePbUtils(llm=llm)
    gen = forward_tokens(pb, "llm", [], caller)
    with closing(gen):
        assert next(gen) == [1]
    assert llm.stop_ids == [pb.sent[0].request_id]
    # answered in full, or with the llm's error: nothing is left to stop
    error = InferenceResponse(error=TritonError("bad", TritonError.INVALID_ARG))
    for answers, raises in (([tokens([1]), FINAL], nullcontext()), ([error], pytest.raises(ForwardedError))):
        pb = FakePbUtils(llm=lambda req, a=answers: iter(a))
        gen = forward_tokens(pb, "llm", [], caller)
        with closing(gen), raises:
            list(gen)
        assert len(pb.sent) == 1


class Responses:
    """A decoupled BLS call's response iterator whose lifetime a test can see (weakref)."""

    def __init__(self, responses):
        self._it = iter(responses)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)


@pytest.mark.parametrize("how", ["read to the end", "cancelled", "closed early", "llm error"])
def test_every_bls_iterator_outlives_a_round_trip_after_its_last_response(how):
    """The cause of the stub's segfault under perf_analyzer's streams (Triton 2.51, python_backend
    r24.10): the stub drops its own reference to a finished decoupled-BLS iterator on its
    stub-to-parent thread without the GIL; if Python had let go first, the responses' numpy arrays
    are freed there. forward_tokens holds every iterator (the call's and the stop request's) until
    the caller's is_cancelled() (a round trip through that thread's queue, after the clean-ups)
    has answered, and frees them after it, here."""
    refs: list = []
    alive_at_last_ask: list[bool] = []
    llm = StoppableLlm(tokens_before_stop=3)

    def model(req):
        inner = llm(req)
        if how == "llm error" and not any(t.name() == C.STOP.name for t in req.inputs):
            inner = iter([tokens([1]), InferenceResponse(error=TritonError("bad", TritonError.INVALID_ARG))])
        it = Responses(inner)
        refs.append(weakref.ref(it))
        return it

    class Watching(Caller):
        def is_cancelled(self):
            alive_at_last_ask[:] = [r() is not None for r in refs]
            return super().is_cancelled() or (how == "cancelled" and self.asked > 1)

    caller = Watching()
    gen = forward_tokens(FakePbUtils(llm=model), "llm", [], caller, check_period_s=0)
    with closing(gen):
        try:
            for piece in gen:
                if how == "closed early":
                    break
        except (CallerCancelled, ForwardedError):
            pass
    assert len(refs) == (2 if how in ("cancelled", "closed early") else 1)  # the stop request's too
    assert alive_at_last_ask == [True] * len(refs)  # held through the barrier
    assert all(r() is None for r in refs)  # then freed, by Python


class Ended:
    """A callee's stub generation that a test ends (its process killed)."""

    def __init__(self):
        self.dead = threading.Event()

    def ended(self) -> bool:
        return self.dead.is_set()


class Watch:
    def __init__(self, generation):
        self.generation = generation

    def current(self):
        return self.generation


def test_a_callee_that_dies_mid_generation_ends_the_call_unavailable_and_its_iterator_is_kept():
    """Triton 2.51 never ends a decoupled BLS call whose callee's stub was killed: its iterator
    waits for ever. The forwarding thread waits on the responses with a bound and asks the
    callee's liveness each period: the call ends UNAVAILABLE, nothing is sent to the dead llm,
    and the never-ending iterator is kept (freeing it could race the stub's own clean-up)."""
    generation, forever = Ended(), threading.Event()

    class Hanging(Responses):
        def __next__(self):
            if self.sent:
                generation.dead.set()  # killed after its first token; its iterator never ends
                forever.wait()
            self.sent = True
            return tokens([7])

    hanging = Hanging([])
    hanging.sent = False
    pb = FakePbUtils(llm=lambda req: hanging)
    caller = Caller()
    gen = forward_tokens(pb, "llm", [], caller, check_period_s=0.01, callee=Watch(generation))
    assert next(gen) == [7]
    with pytest.raises(triton_adapter.CalleeEnded) as e:
        next(gen)
    assert e.value.code == TritonError.UNAVAILABLE and "process ended" in str(e.value)
    assert bls_error(pb, e.value).error().code() == TritonError.UNAVAILABLE
    assert len(pb.sent) == 1  # no stop request to a dead llm
    assert any(it is hanging for it in triton_adapter._ABANDONED)
    forever.set()  # let the reader thread go


def test_a_caller_cancelled_while_the_llm_is_silent_is_seen_and_stopped():
    """No response comes (the llm has not reached the request yet): the wait is bounded by the
    check period, so a cancel is seen anyway and the forwarded request stopped by its id."""
    stopped = threading.Event()
    stop_ids = []

    def llm(req):
        if any(t.name() == C.STOP.name for t in req.inputs):
            stop_ids.append(req.request_id)
            stopped.set()
            return iter([FINAL])

        def silent():
            stopped.wait(WAIT_S)  # answers only once stopped
            yield FINAL

        return silent()

    pb, caller = FakePbUtils(llm=llm), Caller()
    gen = forward_tokens(pb, "llm", [], caller, check_period_s=0.01)

    def cancel_when_asked_twice(original=caller.is_cancelled):
        answer = original()
        if caller.asked >= 2:  # asked once before forwarding, then while waiting
            caller.cancelled.set()
        return answer or caller.cancelled.is_set()

    caller.is_cancelled = cancel_when_asked_twice
    with pytest.raises(CallerCancelled):
        next(gen)
    assert stop_ids == [pb.sent[0].request_id]
