"""Long-form audio -> segments the model can take (<= 40 s), cut at pauses.

Speech is found by a voice-activity detector, ``vad``: ``silero`` (the default; Silero VAD on
ONNX Runtime, :mod:`canary_triton.longform.vad`: speech probability >= ``vad_threshold`` per 32 ms window,
speech shorter than ``min_speech_s`` dropped, silences shorter than ``min_pause_s`` bridged) or
``energy``, a hand-written detector kept for comparison (benchmarks/vad_eval.py): 20 ms frames
whose RMS level is within ``threshold_db`` of the recording's loud level (its 95th-percentile
frame), ``noise_margin_db`` above its noise floor (10th-percentile frame) and above an absolute
floor count as speech; pauses shorter than ``min_pause_s`` do not split speech (measured,
benchmarks/README.md: it finds no pause under any noise floor). Consecutive speech regions are merged
into segments up to ``merge_s`` (fewer, longer segments: the model was trained on up to 40 s and
the server batches fewer requests). A region longer than ``max_segment_s`` (speech with no
pause; by default the model's 40 s) is hard-cut at
the quietest frame in the last ``search_s`` before the limit, and the next segment starts
``overlap_s`` earlier; :func:`join_texts` removes the words the overlap transcribed twice.

Audio where no speech is found gives no segment, so it is never sent to the model: silence, noise
and music cost the detector's time only and give empty text. Region bounds are the sample
indices where the audio is cut (timestamps never accumulate rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from canary_triton import contract as C
from canary_triton.longform import vad

VADS = ("silero", "energy")


@dataclass(frozen=True)
class SegmentOptions:
    merge_s: float = 30.0  # merge consecutive speech into segments up to this span
    max_segment_s: float = C.MAX_AUDIO_SECONDS  # hard limit: longer speech is hard-cut
    vad: str = "silero"  # silero | energy
    vad_threshold: float = 0.5  # silero: speech probability threshold, in (0, 1)
    min_speech_s: float = 0.25  # silero: shorter speech is dropped (clicks)
    vad_threads: int = 1  # silero: ONNX Runtime intra-op threads
    min_pause_s: float = 0.2  # shorter silences do not split speech
    threshold_db: float = 45.0  # speech: within this many dB of the loud level (95th-percentile frame),
    noise_margin_db: float = 10.0  # this far above the noise floor (10th-percentile frame) when the
    noise_gap_db: float = 30.0  # floor is at least this far below the loud level,
    floor_db: float = -60.0  # and above this absolute level (dBFS)
    frame_s: float = 0.02
    pad_s: float = 0.05  # audio kept before speech (energy: and after; silero's ends already trail the speech)
    silence_pad_s: float = 0.3  # zeros added at both ends of each segment sent to the model (not in its bounds)
    overlap_s: float = 1.0  # hard cuts: the next segment starts this much before the cut
    search_s: float = 3.0  # hard cuts: look for the quietest frame this far before the limit

    def __post_init__(self) -> None:
        if not 0 < self.max_segment_s <= C.MAX_AUDIO_SECONDS:
            raise ValueError(f"max_segment_s must be in (0, {C.MAX_AUDIO_SECONDS:g}], got {self.max_segment_s}")
        if not 0 < self.merge_s <= self.max_segment_s:
            raise ValueError(f"merge_s must be in (0, max_segment_s={self.max_segment_s:g}], got {self.merge_s}")
        if not 0 <= self.overlap_s < self.max_segment_s / 2:
            raise ValueError(f"overlap_s must be in [0, max_segment_s / 2), got {self.overlap_s}")
        if self.vad not in VADS:
            raise ValueError(f"vad must be one of {', '.join(VADS)}, got {self.vad!r}")
        if not 0 < self.vad_threshold < 1:
            raise ValueError(f"vad_threshold must be in (0, 1), got {self.vad_threshold:g}")
        for name in ("min_speech_s", "min_pause_s", "pad_s", "silence_pad_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name):g}")
        if self.vad_threads < 1:
            raise ValueError(f"vad_threads must be >= 1, got {self.vad_threads}")
        if self.frame_s <= 0:
            raise ValueError("frame_s must be > 0")


@dataclass(frozen=True)
class Region:
    """A stretch of the recording sent to the model as one request (the timed text it gives back
    is ``longform.segment.Segment``)."""

    start: int  # sample index, inclusive
    end: int  # sample index, exclusive
    after_hard_cut: bool = False  # starts inside the previous segment (overlap): de-duplicate words

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        return self.start / sample_rate, self.end / sample_rate


def frame_levels_db(audio: np.ndarray, frame: int) -> np.ndarray:
    n = len(audio) // frame
    if n == 0:
        return np.full(1, -120.0)
    x = audio[: n * frame].astype(np.float64).reshape(n, frame)
    rms = np.sqrt(np.mean(x * x, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


def speech_regions(audio: np.ndarray, sample_rate: int, opts: SegmentOptions) -> list[tuple[int, int]]:
    """Speech as (start, end) sample ranges (unpadded), pauses shorter than ``min_pause_s`` bridged."""
    if opts.vad == "silero":
        return silero_regions(audio, sample_rate, opts)
    return energy_regions(audio, sample_rate, opts)


def has_speech(audio: np.ndarray, sample_rate: int, opts: SegmentOptions) -> bool:
    """Whether the detector finds any speech (the short-form VAD gate)."""
    return bool(speech_regions(audio, sample_rate, opts))


def prepare(opts: SegmentOptions) -> None:
    """Load what the detector needs now (the Silero session), so a missing package fails at load."""
    if opts.vad == "silero":
        vad.shared(opts.vad_threads)


def silero_regions(audio: np.ndarray, sample_rate: int, opts: SegmentOptions) -> list[tuple[int, int]]:
    if sample_rate != vad.SAMPLE_RATE:
        raise ValueError(f"the silero segmenter takes {vad.SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    probs = vad.shared(opts.vad_threads).probabilities(audio)
    return vad.regions_from_probs(
        probs, len(audio), opts.vad_threshold, opts.min_speech_s, opts.min_pause_s, sample_rate
    )


def energy_regions(audio: np.ndarray, sample_rate: int, opts: SegmentOptions) -> list[tuple[int, int]]:
    frame = max(1, int(round(opts.frame_s * sample_rate)))
    levels = frame_levels_db(audio, frame)
    loud, noise = float(np.percentile(levels, 95)), float(np.percentile(levels, 10))
    # the noise-floor rule applies only to a recording with a clear floor far below its speech
    # (background noise); in speech without pauses the quietest frames are speech, not noise
    above_noise = noise + opts.noise_margin_db if loud - noise > opts.noise_gap_db else -np.inf
    speech = levels > max(loud - opts.threshold_db, above_noise, opts.floor_db)
    regions: list[list[int]] = []
    min_gap = int(np.ceil(opts.min_pause_s / opts.frame_s))
    for i in np.flatnonzero(speech):
        if regions and i - regions[-1][1] < min_gap:
            regions[-1][1] = i + 1
        else:
            regions.append([int(i), int(i) + 1])
    return [(a * frame, min(len(audio), b * frame)) for a, b in regions]


def split(audio: np.ndarray, sample_rate: int, opts: SegmentOptions = SegmentOptions()) -> list[Region]:
    """Segments covering every speech region (with ``pad_s`` around it), each <= max_segment_s."""
    n = len(audio)
    limit = int(opts.max_segment_s * sample_rate)
    merge = int(opts.merge_s * sample_rate)
    pad = int(opts.pad_s * sample_rate)
    # Silero ends speech where its lower threshold is crossed, which already trails the speech
    # (measured on the held-out clips: median 0.03 s, at most 0.09 s late); its onsets are up to
    # 0.12 s late on quiet fricatives, so only the start is padded
    tail = 0 if opts.vad == "silero" else pad
    regions = speech_regions(audio, sample_rate, opts)
    # pad each region, never into its neighbour's padding
    padded = []
    for k, (a, b) in enumerate(regions):
        lo = max(0, a - pad) if k == 0 else max(a - pad, (regions[k - 1][1] + a) // 2)
        hi = min(n, b + tail) if k == len(regions) - 1 else min(b + tail, (b + regions[k + 1][0]) // 2)
        padded.append((lo, hi))
    segments: list[Region] = []
    current: list[int] | None = None
    for lo, hi in padded:
        if hi - lo > limit:  # no pause long enough: hard cuts with overlap
            if current:
                segments.append(Region(current[0], current[1]))
                current = None
            segments.extend(_hard_cuts(audio, lo, hi, sample_rate, opts))
        elif current is not None and hi - current[0] <= merge:
            current[1] = hi
        else:
            if current:
                segments.append(Region(current[0], current[1]))
            current = [lo, hi]
    if current:
        segments.append(Region(current[0], current[1]))
    return segments


def model_input(audio: np.ndarray, segment: Region, opts: SegmentOptions, sample_rate: int) -> np.ndarray:
    """The samples sent to the model for ``segment``: its audio with ``silence_pad_s`` of zeros at
    both ends (as much as fits the model's limit). The tiny fixtures were trained with silence at
    the edges of each clip and garble tight cuts (measured, tests/test_longform_transcribe.py: WER 34% with
    Silero's cuts as they are, 4% with 0.3 s of zeros, 4.5% for the clips one by one)."""
    limit = int(C.MAX_AUDIO_SECONDS * sample_rate)
    n = segment.end - segment.start
    pad = max(0, min(int(opts.silence_pad_s * sample_rate), (limit - n) // 2))
    out = np.zeros(n + 2 * pad, np.float32)
    out[pad : pad + n] = audio[segment.start : segment.end]
    return out


def _hard_cuts(audio: np.ndarray, lo: int, hi: int, sample_rate: int, opts: SegmentOptions) -> list[Region]:
    limit = int(opts.max_segment_s * sample_rate)
    overlap = int(opts.overlap_s * sample_rate)
    search = min(int(opts.search_s * sample_rate), limit // 2)
    frame = max(1, int(round(opts.frame_s * sample_rate)))
    out: list[Region] = []
    start, first = lo, True
    while hi - start > limit:
        window = audio[start + limit - search : start + limit]
        levels = frame_levels_db(window, frame)
        cut = start + limit - search + int(np.argmin(levels)) * frame + frame // 2
        out.append(Region(start, cut, after_hard_cut=not first))
        start, first = cut - overlap, False
    out.append(Region(start, hi, after_hard_cut=not first))
    return out


class TextJoiner:
    """Joins segment texts in order; after a hard cut, the longest run of words that ends the text
    so far and starts the new one (at most ``max_overlap_words``) is dropped once. ``push``
    returns what the segment adds (with its leading space), so the pieces concatenate to ``text``."""

    def __init__(self, max_overlap_words: int = 8):
        self.words: list[str] = []
        self.max_overlap_words = max_overlap_words

    def push(self, segment: Region, text: str) -> str:
        new = text.split()
        if segment.after_hard_cut and self.words:
            new = new[_overlap(self.words, new, self.max_overlap_words) :]
        if not new:
            return ""
        piece = (" " if self.words else "") + " ".join(new)
        self.words.extend(new)
        return piece

    @property
    def text(self) -> str:
        return " ".join(self.words)


def join_texts(texts: list[str], segments: list[Region], max_overlap_words: int = 8) -> str:
    """Segment transcripts joined in order (see :class:`TextJoiner`)."""
    joiner = TextJoiner(max_overlap_words)
    for text, seg in zip(texts, segments):
        joiner.push(seg, text)
    return joiner.text


def _overlap(prev: list[str], new: list[str], limit: int) -> int:
    def norm(w: str) -> str:
        return "".join(ch for ch in w.lower() if ch.isalnum())

    for k in range(min(limit, len(prev), len(new)), 0, -1):
        if [norm(w) for w in prev[-k:]] == [norm(w) for w in new[:k]]:
            return k
    return 0
