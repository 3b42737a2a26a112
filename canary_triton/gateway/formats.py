"""OpenAI's transcription answers: the response formats, their media types, the streaming events.

The bodies are written by :mod:`canary_triton.longform.formats` (shared with the command line);
``segments`` are the long-form entry point's (:class:`~canary_triton.longform.segment.Segment`);
audio up to the model's 40 s is transcribed in one piece and is one segment covering the clip.
"""

from __future__ import annotations

import json

from canary_triton.longform.formats import FORMATS, LANGUAGE, TIMED_FORMATS, render, verbose_json, vtt

__all__ = [
    "LANGUAGE",
    "MEDIA_TYPES",
    "RESPONSE_FORMATS",
    "STREAM_FORMATS",
    "TIMED_FORMATS",
    "delta_event",
    "done_event",
    "render",
    "sse",
    "verbose_json",
    "vtt",
]

RESPONSE_FORMATS = FORMATS
#: Formats ``stream=true`` answers in (the stream's events carry plain text).
STREAM_FORMATS = ("json", "text")

MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def sse(payload: dict | str) -> bytes:
    """One server-sent event (``data:`` only, as OpenAI sends them)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode("utf-8")


def delta_event(delta: str) -> bytes:
    return sse({"type": "transcript.text.delta", "delta": delta})


def done_event(text: str) -> bytes:
    return sse({"type": "transcript.text.done", "text": text})
