"""OpenAI's transcription answers built from a transcript and its timed segments.

``segments`` are the long-form entry point's ``[{"start", "end", "text"}]`` (seconds); audio up
to the model's 40 s is transcribed in one piece and is one segment covering the clip.
"""

from __future__ import annotations

import json

from canary_triton.client.commands import srt_blocks, srt_time

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
#: Formats that carry timing (they need the segments).
TIMED_FORMATS = ("srt", "vtt", "verbose_json")
#: Formats ``stream=true`` answers in (the stream's events carry plain text).
STREAM_FORMATS = ("json", "text")
LANGUAGE = "english"

MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def vtt_blocks(segments: list[dict]) -> str:
    """WebVTT: the header, then one cue per segment with text."""
    cues = "".join(
        f"{srt_time(s['start']).replace(',', '.')} --> {srt_time(s['end']).replace(',', '.')}\n{s['text']}\n\n"
        for s in segments
        if s["text"].strip()
    )
    return "WEBVTT\n\n" + cues


def verbose_json(text: str, segments: list[dict], duration_s: float) -> dict:
    """OpenAI's ``verbose_json``. Whisper's decoding statistics are not computed by this model:
    ``tokens`` is empty and ``avg_logprob``, ``compression_ratio``, ``no_speech_prob`` are 0."""
    return {
        "task": "transcribe",
        "language": LANGUAGE,
        "duration": round(duration_s, 3),
        "text": text,
        "segments": [
            {
                "id": i,
                "seek": 0,
                "start": s["start"],
                "end": s["end"],
                "text": s["text"],
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
            }
            for i, s in enumerate(segments)
        ],
        "usage": {"type": "duration", "seconds": round(duration_s, 3)},
    }


def render(response_format: str, text: str, segments: list[dict] | None, duration_s: float) -> str:
    """The answer body for one ``response_format`` (``segments`` needed for the timed ones)."""
    if response_format == "json":
        return json.dumps(
            {"text": text, "usage": {"type": "duration", "seconds": round(duration_s, 3)}}, ensure_ascii=False
        )
    if response_format == "text":
        return text
    if response_format == "verbose_json":
        return json.dumps(verbose_json(text, segments or [], duration_s), ensure_ascii=False)
    if response_format == "srt":
        return srt_blocks(segments or [])
    if response_format == "vtt":
        return vtt_blocks(segments or [])
    raise ValueError(f"unknown response_format {response_format!r}")


def sse(payload: dict | str) -> bytes:
    """One server-sent event (``data:`` only, as OpenAI sends them)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode("utf-8")


def delta_event(delta: str) -> bytes:
    return sse({"type": "transcript.text.delta", "delta": delta})


def done_event(text: str) -> bytes:
    return sse({"type": "transcript.text.done", "text": text})
