"""Silero VAD on ONNX Runtime, without torch: speech probabilities per 32 ms window and the
speech regions they give.

The model file comes from the installed ``silero-vad`` wheel (found through its distribution
metadata, so the package itself, which imports torch, is never imported). The wheel's
*sequence* export (``silero_vad_16k_sequence.onnx``) runs the same network as the stock
streaming model (``silero_vad.onnx``: one 512-sample window per call, carrying the LSTM state
and the previous window's last 64 samples) over a whole block of windows per call, so a
recording costs a few ONNX calls instead of one per 32 ms (tests/test_longform_vad.py: the
probabilities equal the package's own streaming implementation). ``threads``: ONNX Runtime
intra-op threads (1 by default; CPU in both profiles).

:func:`regions_from_probs` is the package's ``get_speech_timestamps_from_probs`` for the case
the long-form path uses (no maximum speech length: :mod:`canary_triton.longform.segmenter` hard-cuts
over-long speech itself; no padding: the segmenter pads), on numpy.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from canary_triton.errors import CanaryTritonError

# onnxruntime is imported when a session is made: finding the model file (model_path) needs none.
SAMPLE_RATE = 16000
WINDOW = 512  # samples per probability at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees before each window
STATE = 128
SEQUENCE_MODEL = "silero_vad_16k_sequence.onnx"
STREAMING_MODEL = "silero_vad.onnx"
DISTRIBUTION = "silero-vad"
BLOCK_WINDOWS = 512  # windows per ONNX call (16.4 s)


def model_path(name: str = SEQUENCE_MODEL) -> Path:
    """The model file inside the installed ``silero-vad`` wheel."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise CanaryTritonError(
            "silero-vad is not installed: `pip install canary-triton[serve]` (or choose the energy segmenter)"
        ) from None
    path = Path(str(dist.locate_file(f"silero_vad/data/{name}")))
    if not path.is_file():
        raise CanaryTritonError(f"the installed silero-vad {dist.version} has no {name}")
    return path


def frames_with_context(audio: np.ndarray) -> np.ndarray:
    """(n,) float32 -> (ceil(n / 512), 576): each window prefixed by the 64 samples before it
    (zeros before the first), the last window zero-padded."""
    count = -(-len(audio) // WINDOW)
    flat = np.zeros(count * WINDOW + CONTEXT, np.float32)
    flat[CONTEXT : CONTEXT + len(audio)] = audio
    windows = np.lib.stride_tricks.sliding_window_view(flat, CONTEXT + WINDOW)[::WINDOW]
    return np.ascontiguousarray(windows[:count])


class SileroVad:
    """Speech probabilities of 16 kHz audio. Thread-safe: the LSTM state lives in each call, and
    ONNX Runtime sessions may be run from several threads at once."""

    def __init__(self, threads: int = 1, path: str | Path | None = None):
        import onnxruntime as ort

        if threads < 1:
            raise CanaryTritonError(f"VAD threads must be >= 1, got {threads}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path or model_path()), sess_options=so, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """(n,) float32 at 16 kHz -> (ceil(n / 512),) float32 in [0, 1], one per 32 ms window."""
        frames = frames_with_context(np.asarray(audio, np.float32).reshape(-1))
        h = np.zeros((1, 1, STATE), np.float32)
        c = np.zeros((1, 1, STATE), np.float32)
        out = []
        for i in range(0, len(frames), BLOCK_WINDOWS):
            probs, h, c = self.session.run(
                ["speech_probs", "hn", "cn"], {"input": frames[i : i + BLOCK_WINDOWS], "h": h, "c": c}
            )
            out.append(probs.reshape(-1))
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


@lru_cache(maxsize=4)
def shared(threads: int = 1) -> SileroVad:
    """One session per thread count per process (a Triton model instance is a process)."""
    return SileroVad(threads)


def regions_from_probs(
    probs: np.ndarray,
    n_samples: int,
    threshold: float = 0.5,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.1,
    sample_rate: int = SAMPLE_RATE,
) -> list[tuple[int, int]]:
    """Speech (start, end) sample ranges from window probabilities (Silero's hysteresis rule and
    defaults: speech starts at a window >= threshold, ends where a run of windows below the lower
    threshold, longer than ``min_silence_s``, begins; regions up to ``min_speech_s`` dropped)."""
    neg = max(threshold - 0.15, 0.01)
    min_speech = sample_rate * min_speech_s
    min_silence = sample_rate * min_silence_s
    out: list[tuple[int, int]] = []
    triggered, start, temp_end = False, 0, 0
    for i, p in enumerate(np.asarray(probs, np.float64)):
        cur = WINDOW * i
        if p >= threshold and temp_end:
            temp_end = 0
        if p >= threshold and not triggered:
            triggered, start = True, cur
            continue
        if p < neg and triggered:
            if not temp_end:
                temp_end = cur
            if cur - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                out.append((start, temp_end))
            triggered, temp_end = False, 0
    if triggered and n_samples - start > min_speech:
        out.append((start, n_samples))
    return out
