"""canary_triton/gateway/formats.py: OpenAI's response formats, their media types and the streaming
events; the bodies are canary_triton/longform/formats.py's (tested in test_longform_formats.py;
the served answers are in test_gateway.py)."""

from __future__ import annotations

import json

from canary_triton.gateway import formats as f
from canary_triton.longform import formats as shared
from canary_triton.longform.segment import Segment

SEGMENTS = [Segment(0.0, 1.5, "turn on"), Segment(1.5, 2.0, " "), Segment(2.0, 3725.25, "the light")]


def test_every_format_has_a_media_type_and_the_timed_and_streamed_ones_are_formats():
    assert set(f.MEDIA_TYPES) == set(f.RESPONSE_FORMATS)
    assert set(f.TIMED_FORMATS) <= set(f.RESPONSE_FORMATS) and set(f.STREAM_FORMATS) <= set(f.RESPONSE_FORMATS)
    assert not set(f.TIMED_FORMATS) & set(f.STREAM_FORMATS)
    assert all("charset=utf-8" in f.MEDIA_TYPES[k] for k in ("text", "srt", "vtt"))


def test_the_bodies_are_the_shared_formats():
    assert f.RESPONSE_FORMATS == shared.FORMATS and f.render is shared.render
    assert f.render("srt", "x", SEGMENTS, 3725.25) == (
        "1\n00:00:00,000 --> 00:00:01,500\nturn on\n\n2\n00:00:02,000 --> 01:02:05,250\nthe light\n\n"
    )
    body = json.loads(f.render("verbose_json", "turn on the light", SEGMENTS, 3725.25))
    assert [(s["id"], s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        (i, s.start, s.end, s.text) for i, s in enumerate(SEGMENTS)
    ]


def test_the_gateway_no_longer_imports_the_command_line():
    import ast
    from pathlib import Path

    import canary_triton.gateway as gateway

    for path in Path(gateway.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("canary_triton.client.commands"), path.name


def test_stream_events_are_data_only_server_sent_events():
    assert f.delta_event("héllo") == 'data: {"type": "transcript.text.delta", "delta": "héllo"}\n\n'.encode()
    assert f.done_event("all") == b'data: {"type": "transcript.text.done", "text": "all"}\n\n'
    assert f.sse("[DONE]") == b"data: [DONE]\n\n"
