"""Helpers shared by the Triton Python models (``canary_triton.triton_models``); they take the
backend's ``pb_utils`` module as an argument, so importing this needs no Triton.

Each model.py first imports ``canary_bootstrap`` (copied beside it), which fixes the stub's ASCII
locale and isolated ``sys.path`` so that this package can be imported at all.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from . import contract as C
from .errors import InputError
from .model_params import ModelParams

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


def error_response(pb_utils, exc: Exception):
    """INVALID_ARG for a client's mistake (Triton answers HTTP 400), INTERNAL otherwise."""
    if isinstance(exc, (InputError, ValueError)):
        code = pb_utils.TritonError.INVALID_ARG
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


class _Watch:
    """One caller being watched; its lock is held while its ``is_cancelled()`` runs."""

    def __init__(self, is_cancelled, on_cancel):
        self.is_cancelled, self.on_cancel = is_cancelled, on_cancel
        self.lock = threading.Lock()
        self.active = True  # False once unwatched or fired: never asked again


class CancelWatcher:
    """One thread per model instance that polls the in-flight callers' ``is_cancelled()`` (an
    IPC round trip each, hence a shared poller at ``interval_s`` rather than one per request) and
    runs each watch's ``on_cancel`` once when its caller is cancelled, until :meth:`close`.

    A caller is asked only while its watch exists: :meth:`unwatch` (called before the caller is
    answered) waits for a check of that caller in progress, so a request is never asked after its
    response (Triton 2.51 crashes in ResponseFactoryIsCancelled then). Each watch has its own
    lock: a check that hangs holds up only its own caller's unwatch, not every worker's."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self._watches: dict[int, _Watch] = {}
        self._lock = threading.Lock()  # guards the dict only; never held during a check
        self._next = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cancel-watcher", daemon=True)
        self._thread.start()

    def watch(self, is_cancelled, on_cancel) -> int:
        with self._lock:
            self._next += 1
            self._watches[self._next] = _Watch(is_cancelled, on_cancel)
            return self._next

    def unwatch(self, handle: int) -> None:
        with self._lock:
            watch = self._watches.pop(handle, None)
        if watch is not None:
            with watch.lock:  # waits for a check of this caller in progress
                watch.active = False

    def close(self) -> None:
        """Stop polling (the model is being unloaded); returns once the thread has ended."""
        self._closed.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._closed.wait(self.interval_s):
            with self._lock:
                watches = list(self._watches.items())
            for handle, watch in watches:
                with watch.lock:
                    if not watch.active:
                        continue
                    try:
                        cancelled = bool(watch.is_cancelled())
                    except Exception:  # noqa: BLE001
                        cancelled = False
                    if cancelled:
                        watch.active = False
                if cancelled:
                    with self._lock:
                        self._watches.pop(handle, None)
                    try:
                        watch.on_cancel()
                    except Exception:  # noqa: BLE001  the llm may be gone: nothing left to stop
                        pass


def stop_request_inputs(pb_utils) -> list:
    """The inputs of a TensorRT-LLM ``stop`` request: the backend's required tensors (minimal
    values; Triton checks them before the backend sees the request) and ``stop`` = true."""

    return [
        pb_utils.Tensor(C.INPUT_IDS.name, scalar_array(0)),
        pb_utils.Tensor(C.INPUT_LENGTHS.name, scalar_array(1)),
        pb_utils.Tensor(C.REQUEST_OUTPUT_LEN.name, scalar_array(1)),
        pb_utils.Tensor(C.STOP.name, scalar_array(True, np.bool_)),
    ]


def send_cancel(pb_utils, model: str, request_id: str) -> None:
    """Stop the request that the decoupled ``model`` received with ``request_id``: the
    TensorRT-LLM backend's own mechanism (a ``stop`` request with the same id), which the CPU
    ``llm`` honours too."""

    request = pb_utils.InferenceRequest(
        model_name=model,
        requested_output_names=[C.OUTPUT_IDS.name],
        inputs=stop_request_inputs(pb_utils),
        request_id=request_id,
    )
    for _ in request.exec(decoupled=True):
        pass


def forward_tokens(
    pb_utils, model: str, inputs, streaming: bool = False, caller=None, watcher: CancelWatcher | None = None
):
    """Call the decoupled ``llm`` through BLS; yield each response's new token ids.

    With ``caller`` (whatever tells whether the request being served was cancelled: the request
    of a unary model, the response sender of a decoupled one) and a ``watcher``, a cancelled
    caller cancels the forwarded request too: generation stops at the next token and its batch
    slot is freed. So does closing the generator before the llm's last response (the caller
    stopped reading, e.g. on an error of its own).

    Close it (``contextlib.closing``) before the caller's FINAL response: the watch must end
    first, as Triton 2.51 fails when asked whether an answered request was cancelled."""

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
        arr = t.as_numpy() if t.name() in scalars else None
        fixed.append(pb_utils.Tensor(t.name(), arr[:, None]) if arr is not None and arr.ndim == 1 else t)
    inputs = fixed
    if streaming:
        inputs.append(pb_utils.Tensor(C.STREAMING.name, np.array([[True]], dtype=np.bool_)))
    # A unique request id per forwarded request: a stop request with the same id cancels it.
    key = uuid.uuid4().hex if caller is not None and watcher is not None else None
    request = pb_utils.InferenceRequest(
        model_name=model,
        inputs=inputs,
        requested_output_names=[C.OUTPUT_IDS.name, C.SEQUENCE_LENGTH.name],
        request_id=key or "",
    )
    handle = watcher.watch(caller.is_cancelled, lambda: send_cancel(pb_utils, model, key)) if key else None
    answered = False  # the llm sent its last response (its final one, or its error)
    try:
        for response in request.exec(decoupled=True):
            if response.has_error():
                answered = True
            _raise_if_error(pb_utils, response)
            ids = pb_utils.get_output_tensor_by_name(response, C.OUTPUT_IDS.name)
            if ids is None:  # the flag-only final response
                continue
            n = int(pb_utils.get_output_tensor_by_name(response, C.SEQUENCE_LENGTH.name).as_numpy().reshape(-1)[0])
            yield ids.as_numpy()[0, 0, :n].tolist()
        answered = True
    finally:
        if handle is not None:
            watcher.unwatch(handle)
        if key and not answered:  # closed early: stop the generation nobody reads any more
            try:
                send_cancel(pb_utils, model, key)
            except Exception:  # noqa: BLE001  the llm may be gone: nothing left to stop
                pass
    if caller is not None and caller.is_cancelled():
        raise CallerCancelled("the request was cancelled by the client")


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
