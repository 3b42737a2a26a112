"""Long-form served: a 3-5 minute recording, streaming, a 70 s clip without pauses, limits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.client import CanaryClient, ClientOptions, ServerError
from canary_triton.errors import InputError
from canary_triton.evaluation.wer import wer
from canary_triton.fixtures import noise
from canary_triton.longform.segmenter import Region, SegmentOptions, join_texts, model_input, split
from canary_triton.longform.transcribe import LongFormOptions, plan

from .conftest import SR, TINY_LONG_FORM_MERGE_S
from .test_longform_segmenter import long_recording

OPTS = SegmentOptions(merge_s=TINY_LONG_FORM_MERGE_S)


@pytest.fixture(scope="module")
def recording(heldout):
    picks: list[int] = []
    audio, spans, texts = long_recording(heldout, 200, seed=5, pauses=(0.2, 2.0), picks=picks)
    assert 180 <= len(audio) / SR <= 300
    return audio, texts, picks, spans


def test_a_recording_of_minutes_is_transcribed_and_equals_its_segments_one_by_one(server_trained, recording, heldout):
    """The demo export's long form (the server fixture has its settings: Silero, one utterance
    per segment) on held-out utterances with 0.2-2 s pauses: WER within 2 points of the same
    utterances transcribed one by one; and the transcript is its segments' transcripts joined."""
    audio, texts, picks, _ = recording
    with CanaryClient(options=ClientOptions(url=server_trained.grpc_url, timeout_s=600)) as c:
        got = c.transcribe(audio)  # > 40 s: the long-form entry point
        segments = c.transcribe_segments(audio)
        planned = split(audio, SR, OPTS)
        one_by_one = [c.transcribe(model_input(audio, s, OPTS, SR)) for s in planned]
        alone = [c.transcribe(a) for a, _ in heldout]
    utterances = " ".join(alone[k] for k in picks)
    ref = " ".join(texts)
    assert wer([ref], [got]) <= wer([ref], [utterances]) + 0.02, (wer([ref], [got]), wer([ref], [utterances]))
    assert wer([ref], [got]) <= 0.10, (wer([ref], [got]), got[:200])
    assert got == join_texts(one_by_one, planned)
    assert [(round(s.start / SR, 3), round(s.end / SR, 3)) for s in planned] == [(d.start, d.end) for d in segments]
    assert [d.text for d in segments] == one_by_one
    print(
        f"\nlong-form: {len(audio) / SR:.0f} s, {len(planned)} segments, WER {100 * wer([' '.join(texts)], [got]):.1f}%"
    )


def test_streaming_long_form_sends_segments_in_order(server_trained, recording):
    audio = recording[0]
    audio = audio[: 60 * SR]
    with CanaryClient(options=ClientOptions(url=server_trained.grpc_url, timeout_s=600)) as c:
        unary = c.transcribe(audio)
        pieces = list(c.stream(audio))
    assert len(pieces) == len([s for s in split(audio, SR, OPTS)]) - pieces.count("")
    assert "".join(pieces) == unary


NO_SPEECH = {
    "near-silence with clicks": noise.near_silence_with_clicks,
    "pink noise": noise.pink_noise,
    "synthetic music": noise.synthetic_music,
}


@pytest.mark.parametrize("kind", sorted(NO_SPEECH))
def test_no_speech_gives_no_text_through_both_long_form_entry_points(server_trained, kind):
    """Silence, noise and music are never sent to the model (no segment at all), so no text."""
    audio = NO_SPEECH[kind](50, seed=4)
    with CanaryClient(options=ClientOptions(url=server_trained.grpc_url, timeout_s=600)) as c:
        assert len(c.transcribe(audio)) <= 3
        assert json.loads(c.infer(C.LONG_FORM_MODEL, {"audio": audio[None]}, C.SEGMENTS.name)) == []
        assert len("".join(c.stream(audio))) <= 3


def test_segment_timestamps_are_the_cuts_within_a_tenth_of_a_second(server_trained, recording):
    audio, _, _, spans = recording
    with CanaryClient(options=ClientOptions(url=server_trained.grpc_url, timeout_s=600)) as c:
        segments = c.transcribe_segments(audio)
    assert len(segments) == len(spans)  # one utterance per segment (the tiny model's merge length)
    worst = max(max(abs(d.start - s / SR), abs(d.end - e / SR)) for d, (s, e) in zip(segments, spans))
    assert worst <= 0.1, worst
    assert segments[-1].end > 180  # minutes in: no drift


def test_seventy_seconds_without_a_pause_is_cut_with_overlap_and_nothing_dropped(server_trained, heldout):
    """The tiny model knows single utterances, so its text at a hard cut is not a quality measure;
    what is checked: every sample is in a segment, each segment's text is that audio's own
    transcript, and joining drops at most ``max_overlap_words`` repeated words per cut."""
    rng = np.random.default_rng(9)
    parts, total, frame = [], 0, 320
    while total < 75 * SR:
        a, _ = heldout[int(rng.integers(len(heldout)))]
        frames = a[: len(a) // frame * frame].reshape(-1, frame)
        level = 20 * np.log10(np.maximum(np.sqrt(np.mean(frames**2, axis=1)), 1e-6))
        a = frames[level > level.max() - 30].reshape(-1)  # every quiet 20 ms frame removed: no pause left
        parts.append(a)
        total += len(a)
    audio = np.concatenate(parts)[: 70 * SR]
    assert len(split(audio, SR, OPTS)) == 2  # one speech region, hard-cut once
    with CanaryClient(options=ClientOptions(url=server_trained.grpc_url, timeout_s=600)) as c:
        got = c.transcribe(audio)
        segments = c.transcribe_segments(audio)
        alone = [
            c.transcribe(model_input(audio, Region(int(round(d.start * SR)), int(round(d.end * SR))), OPTS, SR))
            for d in segments
        ]
    assert len(segments) >= 2
    assert segments[0].start <= 0.2 and segments[-1].end >= 70 - 0.2
    for a, b in zip(segments, segments[1:]):
        assert b.start < a.end  # overlap: no sample between two segments is skipped
        assert b.duration <= C.MAX_AUDIO_SECONDS
    assert [d.text for d in segments] == alone
    joined, dropped = got.split(), sum(len(d.text.split()) for d in segments) - len(got.split())
    assert 0 <= dropped <= 8 * (len(segments) - 1), dropped
    assert joined[: len(alone[0].split())] == alone[0].split()


def test_long_form_limits_and_bad_input(server_trained):
    with CanaryClient(server_trained.grpc_url) as c:
        with pytest.raises(ServerError, match="NaN or Inf"):
            c.transcribe(np.full(50 * SR, np.nan, np.float32))
        with pytest.raises(ServerError, match="at least 160"):
            c.transcribe(np.zeros(10, np.float32), long_form=True)
        with pytest.raises(ServerError, match="'max_new_tokens' is 0"):
            c.infer(
                C.LONG_FORM_MODEL,
                {"audio": np.zeros((1, 50 * SR), np.float32) + 0.01, "max_new_tokens": np.array([[0]], np.int32)},
                C.TRANSCRIPT.name,
            )
        # silence only: no speech, no segment, an empty transcript
        assert c.transcribe(np.zeros(45 * SR, np.float32)) == ""
        assert (
            json.loads(c.infer(C.LONG_FORM_MODEL, {"audio": np.zeros((1, 45 * SR), np.float32)}, C.SEGMENTS.name)) == []
        )


def test_the_long_form_limit_is_read_from_the_repository(exported_trained):
    text = (exported_trained / "model_repository" / C.LONG_FORM_MODEL / "config.pbtxt").read_text()
    assert f'"{C.MAX_LONG_FORM_SECONDS}"' in text or f'"{C.MAX_LONG_FORM_SECONDS:g}"' in text


def test_audio_over_the_long_form_limit_is_refused_naming_it():
    with pytest.raises(InputError, match="the limit is 60 s .*raise the server's long-form limit"):
        plan(np.zeros((1, 61 * SR), np.float32), C.MelParams(), LongFormOptions(max_seconds=60))
