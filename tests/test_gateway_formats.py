"""canary_triton/gateway/formats.py: OpenAI's transcription answer bodies for each
``response_format`` and the streaming events (the served answers are in test_gateway.py)."""

from __future__ import annotations

import json

import pytest

from canary_triton.gateway import formats as f

SEGMENTS = [
    {"start": 0.0, "end": 1.5, "text": "turn on"},
    {"start": 1.5, "end": 2.0, "text": " "},  # no words
    {"start": 2.0, "end": 3725.25, "text": "the light"},
]


def test_every_format_has_a_media_type_and_the_timed_and_streamed_ones_are_formats():
    assert set(f.MEDIA_TYPES) == set(f.RESPONSE_FORMATS)
    assert set(f.TIMED_FORMATS) <= set(f.RESPONSE_FORMATS) and set(f.STREAM_FORMATS) <= set(f.RESPONSE_FORMATS)
    assert not set(f.TIMED_FORMATS) & set(f.STREAM_FORMATS)
    assert all("charset=utf-8" in f.MEDIA_TYPES[k] for k in ("text", "srt", "vtt"))


def test_json_and_text():
    body = json.loads(f.render("json", "héllo", None, 2.34567))
    assert body == {"text": "héllo", "usage": {"type": "duration", "seconds": 2.346}}
    assert "héllo" in f.render("json", "héllo", None, 1.0)  # not ASCII-escaped
    assert f.render("text", "héllo", None, 1.0) == "héllo"


def test_srt_and_vtt_have_a_cue_per_segment_with_words():
    srt = f.render("srt", "x", SEGMENTS, 3725.25)
    assert srt == "1\n00:00:00,000 --> 00:00:01,500\nturn on\n\n2\n00:00:02,000 --> 01:02:05,250\nthe light\n\n"
    vtt = f.render("vtt", "x", SEGMENTS, 3725.25)
    assert vtt == "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nturn on\n\n00:00:02.000 --> 01:02:05.250\nthe light\n\n"
    assert f.render("vtt", "x", None, 0.0) == "WEBVTT\n\n" and f.render("srt", "x", None, 0.0) == ""


def test_verbose_json_lists_every_segment_with_zeroed_whisper_statistics():
    body = json.loads(f.render("verbose_json", "turn on the light", SEGMENTS, 3725.25))
    assert (body["task"], body["language"], body["duration"], body["text"]) == (
        "transcribe",
        "english",
        3725.25,
        "turn on the light",
    )
    assert body["usage"] == {"type": "duration", "seconds": 3725.25}
    assert [(s["id"], s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        (i, s["start"], s["end"], s["text"]) for i, s in enumerate(SEGMENTS)
    ]
    for s in body["segments"]:
        assert s["tokens"] == [] and s["seek"] == 0
        assert s["temperature"] == s["avg_logprob"] == s["compression_ratio"] == s["no_speech_prob"] == 0.0
    assert f.verbose_json("", [], 0.0)["segments"] == []


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown response_format 'xml'"):
        f.render("xml", "x", None, 1.0)


def test_stream_events_are_data_only_server_sent_events():
    assert f.delta_event("héllo") == 'data: {"type": "transcript.text.delta", "delta": "héllo"}\n\n'.encode()
    assert f.done_event("all") == b'data: {"type": "transcript.text.done", "text": "all"}\n\n'
    assert f.sse("[DONE]") == b"data: [DONE]\n\n"
