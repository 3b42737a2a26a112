"""canary_triton/triton_adapter.py, in-process: the helpers the thin model.py files share, against
a minimal stand-in for ``triton_python_backend_utils`` (only what these helpers touch; the BLS
calls are answered by a per-test ``models`` table)."""

from __future__ import annotations

import json
import threading
from contextlib import closing, nullcontext
from types import SimpleNamespace

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.errors import CanaryTritonError, InputError
from canary_triton.model_params import ProjectorParams
from canary_triton.triton_adapter import (
    CallerCancelled,
    CancelWatcher,
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
def test_forward_tokens_yields_each_responses_valid_ids_and_reshapes_scalars():
    pb = FakePbUtils(llm=lambda req: iter([tokens([11, 12, 0], length=2), tokens([13]), FINAL]))
    table = Tensor(C.PROMPT_EMBEDDING_TABLE.name, np.zeros((2, 3, 4), np.float32))
    inputs = [
        Tensor(C.INPUT_IDS.name, np.array([[1, 2], [3, 4]], np.int32)),
        Tensor(C.INPUT_LENGTHS.name, np.array([2, 2], np.int32)),  # [batch] as `reshape: []` delivers it
        Tensor(C.REQUEST_OUTPUT_LEN.name, np.array([[8], [8]], np.int32)),
        table,
    ]
    assert list(forward_tokens(pb, "llm", inputs, streaming=True)) == [[11, 12], [13]]
    (req,) = pb.sent
    assert req.model_name == "llm" and req.request_id == ""  # no caller: nothing to cancel by id
    assert req.requested_output_names == [C.OUTPUT_IDS.name, C.SEQUENCE_LENGTH.name]
    assert req.input(C.INPUT_LENGTHS.name).shape == (2, 1)  # the called model wants [batch, 1]
    assert req.input(C.REQUEST_OUTPUT_LEN.name).shape == (2, 1)  # already [batch, 1]: as it was
    assert req.input(C.INPUT_IDS.name).shape == (2, 2)  # not a scalar input: untouched
    assert table in req.inputs  # the table is passed on as it is (it may be BF16 on the GPU)
    assert req.input(C.STREAMING.name).tolist() == [[True]]


def test_forward_tokens_raises_the_llms_error_with_its_code():
    def llm(req):
        yield tokens([5])
        yield InferenceResponse(error=TritonError("input 'request_output_len' is 9999", TritonError.INVALID_ARG))

    gen = forward_tokens(FakePbUtils(llm=llm), "llm", [])
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
    send_cancel(pb, "llm", "abc")
    (req,) = pb.sent
    assert req.model_name == "llm" and req.request_id == "abc" and req.input(C.STOP.name).tolist() == [[True]]


class Caller:
    """What forward_tokens asks whether the request being served was cancelled."""

    def __init__(self):
        self.cancelled = threading.Event()

    def is_cancelled(self) -> bool:
        return self.cancelled.is_set()


def test_a_cancelled_caller_stops_the_forwarded_request_by_its_id():
    stopped = threading.Event()
    stop_ids = []

    def llm(req):
        if any(t.name() == C.STOP.name for t in req.inputs):  # the stop request
            stop_ids.append(req.request_id)
            stopped.set()
            return iter([FINAL])

        def generate():  # generates until the stop request for its id arrives
            yield tokens([1])
            assert stopped.wait(WAIT_S), "no stop request came"
            yield FINAL

        return generate()

    pb, caller, watcher = FakePbUtils(llm=llm), Caller(), CancelWatcher(interval_s=0.01)
    gen = forward_tokens(
        pb, "llm", [Tensor(C.INPUT_IDS.name, np.array([[1]], np.int32))], caller=caller, watcher=watcher
    )
    assert next(gen) == [1]
    caller.cancelled.set()
    with pytest.raises(CallerCancelled):
        next(gen)
    key = pb.sent[0].request_id
    assert len(key) == 32 and stop_ids == [key]  # a unique id, and the stop request named it
    assert watcher._watches == {}  # unwatched once answered


def test_an_uncancelled_caller_gets_every_token_and_is_unwatched():
    pb, caller, watcher = FakePbUtils(llm=lambda req: iter([tokens([4, 5]), FINAL])), Caller(), CancelWatcher(0.01)
    assert list(forward_tokens(pb, "llm", [], caller=caller, watcher=watcher)) == [[4, 5]]
    assert pb.sent[0].request_id and watcher._watches == {}


def test_a_generator_closed_early_is_unwatched_and_stops_the_forwarded_request():
    """The caller stopped reading (an error of its own): the watch ends at close(), before the
    caller answers, and the generation nobody reads is stopped by its id."""
    stops = []

    def llm(req):
        if any(t.name() == C.STOP.name for t in req.inputs):
            stops.append(req.request_id)
            return iter([FINAL])
        return iter([tokens([1]), tokens([2]), FINAL])

    pb, caller, watcher = FakePbUtils(llm=llm), Caller(), CancelWatcher(interval_s=0.01)
    gen = forward_tokens(pb, "llm", [], caller=caller, watcher=watcher)
    with closing(gen):
        assert next(gen) == [1]
    assert watcher._watches == {} and stops == [pb.sent[0].request_id]
    # answered in full, or with the llm's error: nothing is left to stop
    error = InferenceResponse(error=TritonError("bad", TritonError.INVALID_ARG))
    for answers, raises in (([tokens([1]), FINAL], nullcontext()), ([error], pytest.raises(ForwardedError))):
        pb = FakePbUtils(llm=lambda req, a=answers: iter(a))
        gen = forward_tokens(pb, "llm", [], caller=caller, watcher=watcher)
        with closing(gen), raises:
            list(gen)
        assert len(pb.sent) == 1 and watcher._watches == {}
    watcher.close()


# -- the cancel watcher ----------------------------------------------------------------------
class Barrier:
    """A watch that is never cancelled and sets ``passed`` once the poller has asked it ``n``
    times: every watch registered before it has been polled since."""

    def __init__(self, n: int = 2):
        self.n, self.calls, self.passed = n, 0, threading.Event()

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls >= self.n:
            self.passed.set()
        return False


def test_on_cancel_runs_once_when_the_caller_is_cancelled():
    watcher = CancelWatcher(interval_s=0.01)
    caller, fired, count = Caller(), threading.Event(), []
    watcher.watch(caller.is_cancelled, lambda: (count.append(1), fired.set()))
    barrier = Barrier()
    watcher.watch(barrier, lambda: None)
    assert barrier.passed.wait(WAIT_S) and not fired.is_set()  # polled, not cancelled: nothing runs
    caller.cancelled.set()
    assert fired.wait(WAIT_S)
    later = Barrier()
    watcher.watch(later, lambda: None)
    assert later.passed.wait(WAIT_S)
    assert count == [1]  # the watch is gone after it fired
    watcher.close()


def test_an_unwatched_caller_is_not_asked_again_and_a_failing_one_is_not_cancelled():
    watcher = CancelWatcher(interval_s=0.01)
    asked = []
    handle = watcher.watch(lambda: asked.append(1) or False, lambda: None)
    first = Barrier()
    watcher.watch(first, lambda: None)
    assert first.passed.wait(WAIT_S) and asked
    watcher.unwatch(handle)
    watcher.unwatch(handle)  # twice: harmless
    n = len(asked)

    def broken():
        raise RuntimeError("the request is gone")

    def failing_cancel():
        raise RuntimeError("the llm is gone")

    cancelled_broken = threading.Event()
    watcher.watch(broken, cancelled_broken.set)
    caller = Caller()
    caller.cancelled.set()
    watcher.watch(caller.is_cancelled, failing_cancel)  # its failure must not stop the poller
    after = Barrier()
    watcher.watch(after, lambda: None)
    assert after.passed.wait(WAIT_S)
    assert len(asked) == n  # not asked after unwatch
    assert not cancelled_broken.is_set()  # an is_cancelled() that raises counts as not cancelled
    watcher.close()


def test_a_closed_watcher_stops_polling():
    """ThreadedModel.finalize closes its watcher: an unloaded model leaves no thread behind."""
    watcher = CancelWatcher(interval_s=0.01)
    asked = Barrier()
    watcher.watch(asked, lambda: None)
    assert asked.passed.wait(WAIT_S)
    watcher.close()
    assert not any(t is watcher._thread for t in threading.enumerate())
    calls = asked.calls
    watcher.close()  # twice: harmless
    assert asked.calls == calls


def test_a_check_that_hangs_holds_up_only_its_own_callers_unwatch():
    """An is_cancelled() IPC that never returns must not freeze every worker of the model: the
    other callers are unwatched at once (their workers answer), and the hung one's unwatch
    waits for its check (a caller is never asked after its response)."""
    watcher = CancelWatcher(interval_s=0.01)
    entered, release = threading.Event(), threading.Event()

    def hanging():
        entered.set()
        assert release.wait(WAIT_S)
        return False

    other = watcher.watch(lambda: False, lambda: None)
    stuck = watcher.watch(hanging, lambda: None)
    assert entered.wait(WAIT_S)  # the poller is inside the hung check now
    watcher.unwatch(other)  # returns although the poller is stuck
    unwatched = threading.Event()
    threading.Thread(target=lambda: (watcher.unwatch(stuck), unwatched.set()), daemon=True).start()
    assert not unwatched.wait(0.05)  # a bound, not a timing claim: it cannot return before release
    release.set()
    assert unwatched.wait(WAIT_S) and watcher._watches == {}
    watcher.close()
