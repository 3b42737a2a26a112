"""Helpers shared by the Triton Python models (``canary_triton.triton_models``); they take the
backend's ``pb_utils`` module as an argument, so importing this needs no Triton.

Each model.py first imports ``canary_bootstrap`` (copied beside it), which fixes the stub's ASCII
locale and isolated ``sys.path`` so that this package can be imported at all.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from canary_triton import contract as C
from canary_triton.errors import InputError, ServerBusyError
from canary_triton.model_params import ModelParams
from canary_triton.triton_models.stub_watch import NO_STUB, StubGeneration, StubWatch

P = TypeVar("P", bound=ModelParams)


def model_parameters(args: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` of the model's config as strings (what Triton hands ``initialize``)."""
    cfg = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}


def read_params(args: dict[str, Any], cls: type[P]) -> P:
    """The model's parameters as ``cls`` (model_params); a bad one is an error naming it."""
    return cls.from_parameters(model_parameters(args), args.get("model_name", ""))


def artifacts_dir(args: dict[str, Any], params: ModelParams) -> Path:
    """The export folder: ``params.artifacts`` relative to the model's folder."""
    return (Path(args["model_repository"]) / params.artifacts).resolve()


def callee_watch(args: dict[str, Any], model: str) -> StubWatch:
    """A :class:`~canary_triton.triton_models.stub_watch.StubWatch` of ``model``, a model of the same repository
    this model calls through BLS (``args`` are the caller's ``initialize`` arguments)."""
    return StubWatch(Path(args["model_repository"]).parent, model)


def error_response(pb_utils, exc: Exception):
    """INVALID_ARG for a client's mistake (Triton answers HTTP 400), UNAVAILABLE for a request the
    server cannot finish now (retry), INTERNAL otherwise."""
    if isinstance(exc, (InputError, ValueError)):
        code = pb_utils.TritonError.INVALID_ARG
    elif isinstance(exc, ServerBusyError):
        code = pb_utils.TritonError.UNAVAILABLE
    else:
        code = pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc), code))


def input_array(pb_utils, request, name: str, optional: bool = False) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        if optional:
            return None
        raise InputError(f"input '{name}' is required")
    return tensor.as_numpy()


def scalar_array(value, dtype=np.int32) -> np.ndarray:
    """One value as the [1, 1] array a batched Triton input or output of dims [1] holds."""
    return np.array([[value]], dtype=dtype)


def string_array(text: str) -> np.ndarray:
    """One UTF-8 string as a [1, 1] BYTES array."""
    return np.array([[text.encode("utf-8")]], dtype=np.object_)


def first_string(tensor) -> str:
    """The first string of a BYTES tensor (a model's [1, 1] text output), decoded."""
    return tensor.as_numpy().reshape(-1)[0].decode("utf-8")


def pad_stack(arrays: list[np.ndarray], axis: int) -> np.ndarray:
    """Stack arrays that differ only along ``axis`` (zero right-padding there)."""
    longest = max(a.shape[axis] for a in arrays)
    out = []
    for a in arrays:
        pad = [(0, 0)] * a.ndim
        pad[axis] = (0, longest - a.shape[axis])
        out.append(np.pad(a, pad))
    return np.stack(out)


class ForwardedError(Exception):
    """An error response from a model called through BLS, with its Triton error code kept."""

    def __init__(self, message: str, code: int | None):
        super().__init__(message)
        self.code = code


def _raise_if_error(pb_utils, response) -> None:
    if response.has_error():
        err = response.error()
        message = err.message()
        if C.QUEUE_FULL_MESSAGE.lower() in message.lower():
            # the called model's queue is full: UNAVAILABLE (retry later), whatever code came with it
            raise ForwardedError(message, pb_utils.TritonError.UNAVAILABLE)
        raise ForwardedError(message, err.code() if hasattr(err, "code") else None)


#: How often a BLS model asks whether its caller was cancelled while it forwards to the ``llm``
#: (TensorRT-LLM's ``cancellation_check_period_ms`` default): each ask is an IPC round trip.
CANCELLATION_CHECK_PERIOD_S = 0.1


def stop_request_inputs(pb_utils) -> list:
    """The inputs of a TensorRT-LLM ``stop`` request: the backend's required tensors (minimal
    values; Triton checks them before the backend sees the request) and ``stop`` = true."""

    return [
        pb_utils.Tensor(C.INPUT_IDS.name, scalar_array(0)),
        pb_utils.Tensor(C.INPUT_LENGTHS.name, scalar_array(1)),
        pb_utils.Tensor(C.REQUEST_OUTPUT_LEN.name, scalar_array(1)),
        pb_utils.Tensor(C.STOP.name, scalar_array(True, np.bool_)),
    ]


def send_cancel(pb_utils, model: str, request_id: str, drain: bool = True) -> list:
    """Stop the request that the decoupled ``model`` received with ``request_id``: the
    TensorRT-LLM backend's own mechanism (a ``stop`` request with the same id), which the CPU
    ``llm`` honours too. Returns the stop request's response iterator (read to the end unless
    ``drain`` is false): the caller holds it until its cleanup barrier (see :func:`forward_tokens`)."""

    request = pb_utils.InferenceRequest(
        model_name=model,
        requested_output_names=[C.OUTPUT_IDS.name],
        inputs=stop_request_inputs(pb_utils),
        request_id=request_id,
    )
    responses = request.exec(decoupled=True)
    if drain:
        for _ in responses:
            pass
    return [responses]


def _is_cancelled(caller) -> bool:
    try:
        return bool(caller.is_cancelled())
    except Exception:  # noqa: BLE001  a failing check counts as not cancelled
        return False


class CalleeEnded(ForwardedError):
    """The called model's process ended before its last response (it was killed or crashed; the
    stub supervisor reloads it): the request is lost, UNAVAILABLE (retry)."""


#: Decoupled BLS iterators whose callee died before their last response: the stub still holds
#: them (Triton 2.51 never ends them), so Python keeps them too (see :func:`forward_tokens`).
_ABANDONED: list = []

_END = object()


class _Feed:
    """A decoupled BLS call's responses, read on a thread of their own into a queue, so that the
    forwarding thread waits on them with a bound (Triton 2.51's iterator has no timeout)."""

    def __init__(self, responses):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._read, args=(responses,), name="canary-bls-reader", daemon=True)
        self.thread.start()

    def _read(self, responses) -> None:
        try:
            for response in responses:
                self.queue.put(response)
        except Exception as exc:  # noqa: BLE001  handed to the forwarding thread
            self.queue.put(exc)
        finally:
            self.queue.put(_END)

    def get(self, timeout_s: float):
        """The next response, ``_END`` after the last, or None when ``timeout_s`` passed first."""
        try:
            item = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if item is _END:
            self.thread.join()  # it only returns now: its reference to the iterator goes here
        elif isinstance(item, Exception):
            raise item
        return item


def forward_tokens(
    pb_utils,
    model: str,
    inputs,
    caller,
    check_period_s: float = CANCELLATION_CHECK_PERIOD_S,
    callee: StubWatch | None = None,
):
    """Call the decoupled ``llm`` through BLS (streaming); yield each response's new token ids.

    ``caller`` is the request being served (or its response sender): it must not have been
    answered yet. Every ``check_period_s`` while it waits or reads, the calling thread (which owns
    the caller's responses) asks ``caller.is_cancelled()`` and, with ``callee`` (the ``llm``'s
    :class:`~canary_triton.triton_models.stub_watch.StubWatch`), whether the process that took the request is
    still alive. A cancelled caller, or closing the generator before the llm's last response,
    stops the forwarded request by its id (TensorRT-LLM's stop request): generation stops at the
    next token and its row is freed; a cancelled caller then raises :class:`CallerCancelled`. A
    callee that died raises :class:`CalleeEnded` (UNAVAILABLE): Triton 2.51 would never end the
    call. The llm's responses are read on a thread of their own (:class:`_Feed`), so no wait here
    is unbounded.

    **Why the response iterators are held to the end (Triton 2.51's stub, python_backend r24.10).**
    A decoupled BLS call's iterator is owned twice: by Python and by the stub's map of live
    iterators. After the last response the stub queues a clean-up message that drops the map's
    reference on its own stub-to-parent thread, *without the GIL*; if Python let go first, the
    iterator and every response it kept (numpy arrays) are freed there, off the GIL, and the stub
    crashes (a segfault in libpython or libc: what perf_analyzer's streams hit; fixed upstream in
    python_backend #390, r24.12). That thread serves its queue in order, and ``is_cancelled()`` is
    a round trip through the same queue: once the caller's ``is_cancelled()`` has answered after
    the last response, the clean-up is done and Python holds the last reference, so the iterators
    are freed here, under the GIL. The same holds for the stop request's iterator. An iterator
    whose callee died never gets its last response: it is kept for the stub's lifetime."""

    # Inputs declared with ``reshape: []`` reach a model as [batch]; the called model wants [batch, 1].
    scalars = {
        t.name
        for t in (
            C.INPUT_LENGTHS,
            C.REQUEST_OUTPUT_LEN,
            C.END_ID,
            C.PAD_ID,
            C.STREAMING,
            C.PROMPT_VOCAB_SIZE,
            C.TEMPERATURE,
            C.RUNTIME_TOP_P,
            C.SEED,
        )
    }
    fixed = []
    for t in inputs:  # only the small scalar tensors are touched: the table may be BF16 on the GPU
        if t.name() == C.STREAMING.name:
            continue  # the forwarder's to set
        arr = t.as_numpy() if t.name() in scalars else None
        fixed.append(pb_utils.Tensor(t.name(), arr[:, None]) if arr is not None and arr.ndim == 1 else t)
    # Streaming: the llm's responses come as tokens do, so the caller's cancellation is seen while
    # it generates (the CPU llm merges the tokens of a slow reader into one response).
    fixed.append(pb_utils.Tensor(C.STREAMING.name, np.array([[True]], dtype=np.bool_)))
    if _is_cancelled(caller):  # already: nothing to forward
        raise CallerCancelled("the request was cancelled by the client")
    # A unique request id per forwarded request: a stop request with the same id cancels it.
    key = uuid.uuid4().hex
    request = pb_utils.InferenceRequest(
        model_name=model,
        inputs=fixed,
        requested_output_names=[C.OUTPUT_IDS.name, C.SEQUENCE_LENGTH.name],
        request_id=key,
    )
    generation = callee.current() if callee is not None else NO_STUB
    wait_s = max(check_period_s, 0.001)
    held = []  # every decoupled BLS iterator of this call, freed after the barrier (see above)
    ended = False  # the llm's iterator gave its last response
    cancelled = failed = False
    feed = None
    try:
        responses = request.exec(decoupled=True)
        held.append(responses)
        feed = _Feed(responses)
        next_check = time.monotonic() + check_period_s
        while True:
            response = feed.get(wait_s)
            if response is _END:
                ended = True
                break
            if response is not None:
                failed = failed or response.has_error()
                _raise_if_error(pb_utils, response)
                ids = pb_utils.get_output_tensor_by_name(response, C.OUTPUT_IDS.name)
                if ids is not None:  # None: the flag-only final response
                    n = int(
                        pb_utils.get_output_tensor_by_name(response, C.SEQUENCE_LENGTH.name).as_numpy().reshape(-1)[0]
                    )
                    yield ids.as_numpy()[0, 0, :n].tolist()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + check_period_s
                if _is_cancelled(caller):
                    cancelled = True
                    break
                if generation.ended():
                    raise CalleeEnded(
                        f"model {model}: its process ended before it answered (the server reloads it); retry",
                        pb_utils.TritonError.UNAVAILABLE,
                    )
    finally:
        if feed is not None and not ended:
            # cancelled, closed early, an error, or the callee died: stop the generation nobody
            # reads (a no-op after the llm's error) and read every iterator to its end
            _finish(pb_utils, model, key, held, feed, generation, wait_s, stop=not failed)
        # the barrier: one round trip through the stub's queue after the iterators' clean-ups
        cancelled = _is_cancelled(caller) or cancelled
        del held[:]
    if cancelled:
        raise CallerCancelled("the request was cancelled by the client")


def _drain(feed: _Feed, generation: StubGeneration, wait_s: float) -> bool:
    """Read ``feed`` to its end; False if the callee's process ended first."""
    while not generation.ended():
        try:
            if feed.get(wait_s) is _END:
                return True
        except Exception:  # noqa: BLE001  an iterator that raised has ended
            return True
    return False


def _finish(pb_utils, model, key, held: list, feed: _Feed, generation: StubGeneration, wait_s: float, stop: bool):
    """Stop the forwarded request ``key`` (unless the llm already answered with its error) and read
    every iterator to its end (the stop brings the llm's last response at its next token). If the
    callee's process died, its iterators never end: they are kept for the stub's lifetime
    (freeing them could race the stub's own clean-up, see :func:`forward_tokens`)."""
    done = False
    if not generation.ended():
        if stop:
            try:
                held += send_cancel(pb_utils, model, key, drain=False)
                _drain(_Feed(held[-1]), generation, wait_s)
            except Exception:  # noqa: BLE001  the llm may be reloading: its generation ends by itself
                pass
        done = _drain(feed, generation, wait_s)
    if not done:
        _ABANDONED.extend(held)
        del held[:]


class CallerCancelled(Exception):
    """The request being served was cancelled; it is answered with CANCELLED."""


def bls_error(pb_utils, exc: Exception):
    """Pass a called model's error on with its code (INVALID_ARG stays INVALID_ARG)."""
    if isinstance(exc, CallerCancelled) and hasattr(pb_utils.TritonError, "CANCELLED"):
        return pb_utils.InferenceResponse(
            output_tensors=[], error=pb_utils.TritonError(str(exc), pb_utils.TritonError.CANCELLED)
        )
    if isinstance(exc, ForwardedError) and exc.code is not None:
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc), exc.code))
    return error_response(pb_utils, exc)


def unary_call(pb_utils, model: str, inputs, outputs: list[str]) -> dict:
    """One BLS request to a non-decoupled model; its output tensors by name."""
    response = pb_utils.InferenceRequest(model_name=model, inputs=list(inputs), requested_output_names=outputs).exec()
    _raise_if_error(pb_utils, response)
    return {name: pb_utils.get_output_tensor_by_name(response, name) for name in outputs}
