"""The bases of the Triton Python models: responses and the FINAL flag, the validate-each-then-
batch ``execute`` of the batched models, and the worker threads of the BLS models."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from canary_triton.model_params import BlsParams
from canary_triton.triton_models.adapter import bls_error, error_response, input_array, string_array


class PythonModel:
    """A Triton Python model over ``pb_utils`` (the backend's module, or a fake in tests)."""

    def __init__(self, pb_utils):
        self.pb = pb_utils
        self.FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

    def input(self, request, name: str, optional: bool = False) -> np.ndarray | None:
        """The named input as numpy (InputError when a required one is missing)."""
        return input_array(self.pb, request, name, optional)

    def string_tensor(self, name: str, text: str):
        """A [1, 1] BYTES tensor holding ``text`` in UTF-8."""
        return self.pb.Tensor(name, string_array(text))

    def response(self, tensors: list):
        return self.pb.InferenceResponse(tensors)

    def error(self, exc: Exception):
        """The error response for ``exc``: INVALID_ARG for a client's mistake, INTERNAL otherwise."""
        return error_response(self.pb, exc)

    def send(self, sender, tensors: list | None = None, final: bool = True) -> None:
        """Send one response of ``tensors`` (None: the flag-only response), FINAL unless told not."""
        if tensors is None:
            sender.send(flags=self.FINAL)
        else:
            sender.send(self.response(tensors), flags=self.FINAL if final else 0)

    def send_error(self, sender, exc: Exception, forwarded: bool = False) -> None:
        """Answer with ``exc`` as the FINAL response; ``forwarded``: a called model's error code is kept."""
        sender.send(bls_error(self.pb, exc) if forwarded else self.error(exc), flags=self.FINAL)


class BatchedModel(PythonModel):
    """``execute`` checks each request on its own (a bad one fails alone, with its error), then
    runs the valid ones as one batch; an error in the batch fails each of them. Subclasses define
    :meth:`check` and :meth:`run`."""

    def check(self, request) -> Any:
        """This request's validated item for :meth:`run`; raises on bad input."""
        raise NotImplementedError

    def run(self, items: list) -> list[list]:
        """The output tensors of each item, in order."""
        raise NotImplementedError

    def execute(self, requests):
        responses: list = [None] * len(requests)
        valid = []
        for i, request in enumerate(requests):
            try:
                valid.append((i, self.check(request)))
            except Exception as e:  # noqa: BLE001 - every failure becomes this request's error
                responses[i] = self.error(e)
        if not valid:
            return responses
        try:
            outputs = self.run([item for _, item in valid])
        except Exception as e:  # noqa: BLE001
            for i, _ in valid:
                responses[i] = self.error(e)
            return responses
        for (i, _), tensors in zip(valid, outputs):
            responses[i] = self.response(tensors)
        return responses


class ThreadedModel(PythonModel):
    """Base of the BLS models that answer from worker threads: ``execute`` hands each request to
    the pool and returns at once (the response sender answers later), so one instance serves many
    requests concurrently. Subclasses call :meth:`start_workers` and define
    ``serve(request, sender)``, which sends the FINAL response; whatever it raises is sent as the
    request's error, a called model's error code kept."""

    def start_workers(self, params: BlsParams) -> None:
        self.pool = ThreadPoolExecutor(max_workers=params.max_inflight)

    def execute(self, requests):
        for request in requests:
            self.pool.submit(self._answer, request)
        return None

    def _answer(self, request) -> None:
        sender = request.get_response_sender()
        try:
            self.serve(request, sender)
        except Exception as e:  # noqa: BLE001
            self.send_error(sender, e, forwarded=True)

    def serve(self, request, sender) -> None:
        raise NotImplementedError

    def finalize(self):
        self.pool.shutdown(wait=True)
