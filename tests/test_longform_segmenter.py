"""Long-form segmentation: every pause found, no utterance cut, segments <= the limit, overlap
words de-duplicated at hard cuts."""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.longform.segmenter import Region, SegmentOptions, join_texts, speech_regions, split
from canary_triton.model_params import LongFormParams

from .conftest import SR


def _voiced(audio: np.ndarray) -> tuple[int, int]:
    """First and last sample of the 10 ms frames above -60 dBFS (espeak's clips end in silence)."""
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > 1e-3)
    return int(loud[0]) * 160, int(loud[-1] + 1) * 160


def long_recording(heldout, seconds: float, seed: int, pauses=(0.4, 2.0), picks: list | None = None):
    """Held-out clips joined with silences of varied length; each clip's voiced sample range
    (the clips' indices are appended to ``picks`` when given)."""
    rng = np.random.default_rng(seed)
    pieces, spans, texts, t = [np.zeros(int(0.5 * SR), np.float32)], [], [], int(0.5 * SR)
    while t < seconds * SR:
        k = int(rng.integers(len(heldout)))
        if picks is not None:
            picks.append(k)
        audio, text = heldout[k]
        pieces.append(audio)
        a, b = _voiced(audio)
        spans.append((t + a, t + b))
        texts.append(text)
        t += len(audio)
        gap = np.zeros(int(rng.uniform(*pauses) * SR), np.float32)
        pieces.append(gap)
        t += len(gap)
    return np.concatenate(pieces), spans, texts


ENERGY = SegmentOptions(vad="energy")


@pytest.mark.parametrize("vad,tolerance_s", [("energy", 0.06), ("silero", 0.12)])
def test_every_pause_is_found_and_no_utterance_is_cut(heldout, vad, tolerance_s):
    """Pauses of 0.2-2 s: each region is one clip's voiced part (Silero's onsets on quiet
    fricatives are up to 0.12 s late: the segmenter pads the start of its regions)."""
    audio, spans, _ = long_recording(heldout, 120, seed=1, pauses=(0.2, 2.0))
    regions = speech_regions(audio, SR, SegmentOptions(vad=vad))
    assert len(regions) == len(spans)
    for (a, b), (s, e) in zip(regions, spans):
        assert abs(a - s) <= tolerance_s * SR and abs(b - e) <= tolerance_s * SR


@pytest.mark.parametrize("seed", [0, 3])
def test_segment_bounds_are_the_cuts_and_within_a_tenth_of_a_second_of_the_utterances(heldout, seed):
    """One utterance per segment: each segment's (start, end) - where the audio is cut - lies
    within 0.1 s of the utterance's true voiced bounds, over two minutes (no drift)."""
    audio, spans, _ = long_recording(heldout, 120, seed=seed, pauses=(0.2, 2.0))
    segments = split(audio, SR, SegmentOptions(merge_s=0.5))
    assert len(segments) == len(spans)
    errors = [(seg.start - s, seg.end - e) for seg, (s, e) in zip(segments, spans)]
    assert max(abs(x) for pair in errors for x in pair) <= 0.1 * SR, max(errors, key=lambda p: max(map(abs, p)))


@pytest.mark.parametrize("vad,slack_s", [("energy", 0.0), ("silero", 0.1)])
def test_short_limit_gives_one_utterance_per_segment_and_long_limit_merges(heldout, vad, slack_s):
    """Energy segments hold each clip's voiced part whole; Silero's may miss up to ``slack_s`` of
    the quietest onset or tail (the voiced bounds are where the level passes -60 dBFS)."""
    audio, spans, _ = long_recording(heldout, 90, seed=2)
    slack = int(slack_s * SR)

    def holds(seg, s, e):
        return seg.start <= s + slack and e - slack <= seg.end

    one = split(audio, SR, SegmentOptions(merge_s=0.5, vad=vad))
    assert len(one) == len(spans)
    assert all(holds(seg, s, e) for seg, (s, e) in zip(one, spans))
    merged = split(audio, SR, SegmentOptions(merge_s=20, vad=vad))
    assert len(merged) < len(spans) / 3
    assert all(seg.end - seg.start <= 20 * SR for seg in merged)
    for s, e in spans:  # every clip lies inside one segment
        assert sum(holds(seg, s, e) for seg in merged) == 1
    assert all(not seg.after_hard_cut for seg in merged)


def test_speech_without_pauses_is_hard_cut_with_overlap_and_nothing_is_lost():
    t = np.arange(int(95 * SR)) / SR
    audio = (0.3 * np.sin(2 * np.pi * 200 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    opts = ENERGY  # a pure tone is not speech to Silero
    segs = split(audio, SR, opts)
    assert len(segs) == 3 and segs[0].start == 0 and segs[-1].end == len(audio)
    assert [s.after_hard_cut for s in segs] == [False, True, True]
    for a, b in zip(segs, segs[1:]):
        assert b.start == a.end - int(opts.overlap_s * SR)  # every sample is covered, with the overlap
    assert all(s.end - s.start <= C.MAX_AUDIO_SECONDS * SR for s in segs)


def test_silence_only_gives_no_segment():
    assert split(np.zeros(10 * SR, np.float32), SR) == []
    assert split(np.zeros(10 * SR, np.float32), SR, ENERGY) == []


def test_join_texts_drops_the_overlap_once():
    segs = [Region(0, 10), Region(8, 20, after_hard_cut=True), Region(25, 30)]
    assert (
        join_texts(["one two three four", "three four five six", "four five"], segs)
        == "one two three four five six four five"
    )  # no de-dup across a pause
    assert join_texts(["a b", "c d"], [Region(0, 1), Region(1, 2, after_hard_cut=True)]) == "a b c d"
    assert join_texts(["Hello, world.", "world. Again"], [Region(0, 1), Region(1, 2, True)]) == "Hello, world. Again"


def test_options_are_checked():
    with pytest.raises(ValueError, match="max_segment_s"):
        SegmentOptions(max_segment_s=41)
    with pytest.raises(ValueError, match="overlap_s"):
        SegmentOptions(merge_s=2, max_segment_s=2, overlap_s=1.5)
    with pytest.raises(ValueError, match="merge_s"):
        SegmentOptions(merge_s=35, max_segment_s=30)
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match=r"vad_threshold must be in \(0, 1\)"):
            SegmentOptions(vad_threshold=bad)
    for name in ("min_speech_s", "min_pause_s", "pad_s"):
        with pytest.raises(ValueError, match=f"{name} must be >= 0"):
            SegmentOptions(**{name: -0.1})
    with pytest.raises(ValueError, match="vad must be one of silero, energy"):
        SegmentOptions(vad="webrtc")


def test_options_travel_as_model_parameters():
    opts = SegmentOptions(merge_s=12.5, vad="energy", vad_threshold=0.42, min_speech_s=0.3, vad_threads=2)
    params = LongFormParams(segment=opts).parameters()
    assert params["segment.vad"] == "energy" and params["segment.vad_threads"] == "2"
    assert LongFormParams.from_parameters(params).segment == opts
    assert LongFormParams.from_parameters({}).segment == SegmentOptions()


def test_pauses_are_found_over_background_noise_and_speech_without_pauses_is_one_region(heldout):
    audio, spans, _ = long_recording(heldout, 60, seed=3)
    noisy = audio + np.random.default_rng(0).normal(0, 0.003, len(audio)).astype(np.float32)  # about -50 dBFS
    assert len(speech_regions(noisy, SR, ENERGY)) == len(spans)
    assert len(speech_regions(noisy, SR, SegmentOptions())) == len(spans)
    frames = np.concatenate([a for a, _ in heldout[:20]])
    frames = frames[: len(frames) // 320 * 320].reshape(-1, 320)
    level = 20 * np.log10(np.maximum(np.sqrt(np.mean(frames**2, axis=1)), 1e-6))
    continuous = frames[level > level.max() - 30].reshape(-1)  # quiet frames removed: no pause left
    assert len(speech_regions(continuous, SR, ENERGY)) == 1
