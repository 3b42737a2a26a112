"""Long-form transcription (no Triton here): validate, segment at pauses, transcribe the segments
concurrently through a callable (the served ensemble), and join the texts in order.

The joined text is the same whether it is taken at once or streamed piece by piece: each piece is
the words one segment adds after the overlap with the previous one is removed.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from canary_triton import contract as C
from canary_triton.frontend.preprocess import AudioLimits, validate_audio
from canary_triton.longform.segment import Segment
from canary_triton.longform.segmenter import (  # noqa: F401  (TextJoiner re-exported)
    Region,
    SegmentOptions,
    TextJoiner,
    model_input,
    split,
)


@dataclass(frozen=True)
class LongFormOptions:
    max_seconds: float = C.MAX_LONG_FORM_SECONDS
    segment: SegmentOptions = field(default_factory=SegmentOptions)
    max_overlap_words: int = 8

    def limits(self, mel: C.MelParams) -> AudioLimits:
        base = AudioLimits.for_mel(mel)
        return AudioLimits(
            base.sample_rate,
            base.min_samples,
            int(self.max_seconds * mel.sample_rate),
            base.max_abs,
            too_long_hint="split the recording or raise the server's long-form limit",
        )


def transcribe_in_order(
    audio: np.ndarray,
    segments: list[Region],
    transcribe: Callable[[np.ndarray], str],
    pool: Executor,
    is_cancelled: Callable[[], bool] = lambda: False,
    opts: SegmentOptions = SegmentOptions(),
    sample_rate: int = C.MelParams().sample_rate,
) -> Iterator[tuple[Region, str]]:
    """Submit every segment at once (they share the server's in-flight batches) and yield the
    results in segment order as they become available. Stops early when cancelled."""
    futures: list[Future] = [pool.submit(transcribe, model_input(audio, s, opts, sample_rate)) for s in segments]
    try:
        for seg, fut in zip(segments, futures):
            while True:
                if is_cancelled():
                    raise LongFormCancelled("the request was cancelled by the client")
                try:
                    text = fut.result(timeout=0.2)
                    break
                except FutureTimeout:
                    continue
            yield seg, text
    finally:
        for fut in futures:
            fut.cancel()  # not yet started: never sent


class LongFormCancelled(Exception):
    pass


def timed(items: list[tuple[Region, str]], sample_rate: int) -> list[Segment]:
    """Each region's text as a :class:`~canary_triton.longform.segment.Segment`, its bounds in
    seconds rounded to the millisecond."""
    return [Segment(round(r.start / sample_rate, 3), round(r.end / sample_rate, 3), t) for r, t in items]


def plan(audio: np.ndarray, mel: C.MelParams, opts: LongFormOptions) -> tuple[np.ndarray, list[Region]]:
    """Validated audio and its segments."""
    x = validate_audio(audio, opts.limits(mel))
    return x, split(x, mel.sample_rate, opts.segment)
