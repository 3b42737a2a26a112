"""Helpers shared by the thin Triton ``model.py`` adapters (they pass ``pb_utils`` in).

The Python-backend stub starts with an ASCII locale and an isolated ``sys.path``: every model.py
calls :func:`bootstrap` semantics inline (it cannot import this package before fixing them).
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
