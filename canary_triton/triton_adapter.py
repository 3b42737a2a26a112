"""Helpers shared by the thin Triton ``model.py`` adapters (they pass ``pb_utils`` in).

Each model.py first imports ``canary_bootstrap`` (copied beside it), which fixes the stub's ASCII
locale and isolated ``sys.path`` so that this package can be imported at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError


def model_parameters(args: dict[str, Any]) -> dict[str, str]:
    cfg = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}


def artifacts_dir(args: dict[str, Any], params: dict[str, str]) -> Path:
    """The export folder: ``parameters.artifacts`` relative to the model's folder."""
    return (Path(args["model_repository"]) / params["artifacts"]).resolve()


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


def _raise_if_error(response) -> None:
    if response.has_error():
        err = response.error()
        raise ForwardedError(err.message(), err.code() if hasattr(err, "code") else None)


def forward_tokens(pb_utils, model: str, inputs, streaming: bool = False):
    """Call the decoupled ``llm`` through BLS; yield each response's new token ids."""
    from . import contract as C

    # Inputs declared with ``reshape: []`` reach a model as [batch]; the called model wants [batch, 1].
    scalars = {t.name for t in (C.INPUT_LENGTHS, C.REQUEST_OUTPUT_LEN, C.END_ID, C.PAD_ID, C.STREAMING,
                                C.PROMPT_VOCAB_SIZE, C.TEMPERATURE, C.RUNTIME_TOP_P, C.SEED)}
    fixed = []
    for t in inputs:  # only the small scalar tensors are touched: the table may be BF16 on the GPU
        arr = t.as_numpy() if t.name() in scalars else None
        fixed.append(pb_utils.Tensor(t.name(), arr[:, None]) if arr is not None and arr.ndim == 1 else t)
    inputs = fixed
    if streaming:
        inputs.append(pb_utils.Tensor(C.STREAMING.name, np.array([[True]], dtype=np.bool_)))
    request = pb_utils.InferenceRequest(model_name=model, inputs=inputs,
                                        requested_output_names=[C.OUTPUT_IDS.name, C.SEQUENCE_LENGTH.name])
    for response in request.exec(decoupled=True):
        _raise_if_error(response)
        ids = pb_utils.get_output_tensor_by_name(response, C.OUTPUT_IDS.name)
        if ids is None:  # the flag-only final response
            continue
        n = int(pb_utils.get_output_tensor_by_name(response, C.SEQUENCE_LENGTH.name).as_numpy().reshape(-1)[0])
        yield ids.as_numpy()[0, 0, :n].tolist()


def bls_error(pb_utils, exc: Exception):
    """Pass a called model's error on with its code (INVALID_ARG stays INVALID_ARG)."""
    if isinstance(exc, ForwardedError) and exc.code is not None:
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc), exc.code))
    return error_response(pb_utils, exc)


def unary_call(pb_utils, model: str, inputs, outputs: list[str]) -> dict:
    """One BLS request to a non-decoupled model; its output tensors by name."""
    response = pb_utils.InferenceRequest(model_name=model, inputs=list(inputs), requested_output_names=outputs).exec()
    _raise_if_error(response)
    return {name: pb_utils.get_output_tensor_by_name(response, name) for name in outputs}


class ThreadedModel:
    """Base of the BLS models that answer from worker threads: ``execute`` hands each request to
    the pool and returns at once (the response sender answers later), so one instance serves many
    requests concurrently. Subclasses call :meth:`start_workers` and define ``_run(request)``."""

    def start_workers(self, params: dict[str, str]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=int(params.get("max_inflight", "64")))

    def execute(self, requests):
        for request in requests:
            self.pool.submit(self._run, request)
        return None

    def finalize(self):
        self.pool.shutdown(wait=True)
