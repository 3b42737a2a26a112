"""canary_triton/longform/formats.py: a transcript and its segments in each format (SubRip, WebVTT,
OpenAI's text, json, verbose_json), as the command line and the gateway both write them."""

from __future__ import annotations

import json

import pytest

from canary_triton.longform import formats as f
from canary_triton.longform.segment import Segment

SEGMENTS = [Segment(0.0, 1.5, "turn on"), Segment(1.5, 2.0, " "), Segment(2.0, 3725.25, "the light")]


@pytest.mark.parametrize(
    "seconds,srt,vtt",
    [
        (0, "00:00:00,000", "00:00:00.000"),
        (1.2344, "00:00:01,234", "00:00:01.234"),
        (59.9996, "00:01:00,000", "00:01:00.000"),
        (3723.05, "01:02:03,050", "01:02:03.050"),
    ],
)
def test_timestamps_round_to_the_millisecond(seconds, srt, vtt):
    assert f.timestamp(seconds) == srt and f.timestamp(seconds, ".") == vtt


def test_srt_numbers_only_the_segments_with_words():
    assert f.srt(SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:01,500\nturn on\n\n2\n00:00:02,000 --> 01:02:05,250\nthe light\n\n"
    )
    assert f.srt([]) == ""


def test_vtt_has_its_header_and_a_cue_per_segment_with_words():
    assert f.vtt(SEGMENTS) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nturn on\n\n00:00:02.000 --> 01:02:05.250\nthe light\n\n"
    )
    assert f.vtt([]) == "WEBVTT\n\n"


def test_render_writes_every_format():
    assert set(f.TIMED_FORMATS) <= set(f.FORMATS)
    assert json.loads(f.render("json", "héllo", None, 2.34567)) == {
        "text": "héllo",
        "usage": {"type": "duration", "seconds": 2.346},
    }
    assert "héllo" in f.render("json", "héllo", None, 1.0)  # not ASCII-escaped
    assert f.render("text", "héllo", None, 1.0) == "héllo"
    assert f.render("srt", "x", SEGMENTS, 0.0) == f.srt(SEGMENTS) and f.render("srt", "x", None, 0.0) == ""
    assert f.render("vtt", "x", SEGMENTS, 0.0) == f.vtt(SEGMENTS) and f.render("vtt", "x", None, 0.0) == "WEBVTT\n\n"
    assert json.loads(f.render("verbose_json", "t", SEGMENTS, 3725.25)) == f.verbose_json("t", SEGMENTS, 3725.25)
    with pytest.raises(
        ValueError, match="unknown response_format 'xml'; use one of json, text, srt, vtt, verbose_json"
    ):
        f.render("xml", "x", None, 1.0)


def test_verbose_json_lists_every_segment_with_zeroed_whisper_statistics():
    body = f.verbose_json("turn on the light", SEGMENTS, 3725.25)
    assert (body["task"], body["language"], body["duration"], body["text"]) == (
        "transcribe",
        f.LANGUAGE,
        3725.25,
        "turn on the light",
    )
    assert body["usage"] == {"type": "duration", "seconds": 3725.25}
    assert [(s["id"], s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        (i, s.start, s.end, s.text) for i, s in enumerate(SEGMENTS)
    ]
    for s in body["segments"]:
        assert s["tokens"] == [] and s["seek"] == 0
        assert s["temperature"] == s["avg_logprob"] == s["compression_ratio"] == s["no_speech_prob"] == 0.0
    assert f.verbose_json("", [], 0.0)["segments"] == []
