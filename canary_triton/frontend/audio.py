"""Reading audio files into what the model takes: 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from canary_triton.errors import InputError

# soxr and soundfile (native libraries) load on first use: the client and the CLI import this
# module without reading or resampling anything.


def to_model_rate(samples: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Downmix to mono (channels last) and resample with soxr to ``target_rate``."""
    import soxr

    x = np.asarray(samples)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    x = x.astype(np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    elif x.ndim != 1:
        raise InputError(f"audio must be 1-D (mono) or 2-D (samples x channels), got shape {x.shape}")
    if sample_rate != target_rate:
        x = soxr.resample(x, sample_rate, target_rate, quality="HQ").astype(np.float32)
    return x


def load_audio(path: str | Path, target_rate: int) -> np.ndarray:
    """Read a file soundfile can decode (WAV, FLAC, OGG, MP3...) as mono float32 at ``target_rate``."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile's errors carry the reason
        raise InputError(f"cannot decode audio file {path}: {e}") from None
    return to_model_rate(data, sr, target_rate)
