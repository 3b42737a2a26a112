"""Checks of the tensors a client may send straight to an inner model (encoder, projector,
postprocessor): the ensemble's own traffic always passes them; a direct caller's mistake is
refused with INVALID_ARG naming the input and the limit, and never reaches the batch of others."""

from __future__ import annotations

import numpy as np

from canary_triton import contract as C
from canary_triton.errors import InputError


def _finite_float32(x: np.ndarray, name: str) -> None:
    if x.dtype != np.float32:
        raise InputError(f"input '{name}' must be FP32, got {x.dtype}")
    if not np.isfinite(x).all():
        raise InputError(f"input '{name}' contains NaN or Inf")


def check_mel(mel: np.ndarray, length: np.ndarray, n_mels: int, max_frames: int) -> tuple[np.ndarray, int]:
    """One request's mel ``[1, n_mels, T]`` and valid length (1..T, T <= the 40 s limit)."""
    name = C.MEL.name
    _finite_float32(mel, name)
    if mel.ndim != 3 or mel.shape[0] != 1 or mel.shape[1] != n_mels:
        raise InputError(f"input '{name}' must have shape [1, {n_mels}, frames], got {list(mel.shape)}")
    frames = mel.shape[2]
    if not 1 <= frames <= max_frames:
        raise InputError(
            f"input '{name}' has {frames} frames; the limit is 1..{max_frames} ({C.MAX_AUDIO_SECONDS:g} s)"
        )
    n = int(np.asarray(length).reshape(-1)[0]) if np.asarray(length).size == 1 else -1
    if not 1 <= n <= frames:
        raise InputError(
            f"input '{C.MEL_LENGTH.name}' must be one value in 1..{frames} (the mel's frames), "
            f"got {np.asarray(length).reshape(-1).tolist()}"
        )
    return mel[0], n


def check_encoded(encoded: np.ndarray, dim: int, max_frames: int) -> np.ndarray:
    """One request's encoder output ``[1, T, dim]`` with 1 <= T <= the 40 s frame limit."""
    name = C.ENCODED.name
    _finite_float32(encoded, name)
    if encoded.ndim != 3 or encoded.shape[0] != 1 or encoded.shape[2] != dim:
        raise InputError(f"input '{name}' must have shape [1, frames, {dim}], got {list(encoded.shape)}")
    if not 1 <= encoded.shape[1] <= max_frames:
        raise InputError(f"input '{name}' has {encoded.shape[1]} frames; the limit is 1..{max_frames}")
    return encoded[0]


def check_output_ids(ids: np.ndarray, lengths: np.ndarray, vocab_rows: int) -> list[int]:
    """One request's ``output_ids [1, beams, L]`` and ``sequence_length [1, beams]``: beam 0's
    valid ids, each a token id of the vocabulary."""
    if ids.ndim != 3 or ids.shape[0] != 1 or ids.shape[1] < 1:
        raise InputError(f"input '{C.OUTPUT_IDS.name}' must have shape [1, beams, length], got {list(ids.shape)}")
    flat = np.asarray(lengths).reshape(-1)
    if flat.size < 1 or not 0 <= int(flat[0]) <= ids.shape[2]:
        raise InputError(
            f"input '{C.SEQUENCE_LENGTH.name}' must be in 0..{ids.shape[2]} (the ids' length), got {flat.tolist()}"
        )
    out = ids[0, 0, : int(flat[0])]
    if out.size and (int(out.min()) < 0 or int(out.max()) >= vocab_rows):
        raise InputError(
            f"input '{C.OUTPUT_IDS.name}' holds ids outside 0..{vocab_rows - 1} "
            f"(min {int(out.min())}, max {int(out.max())})"
        )
    return out.tolist()
