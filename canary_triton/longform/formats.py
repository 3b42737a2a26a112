"""A transcript and its timed segments as text, in the formats users ask for: the subtitle formats
(SubRip ``srt``, WebVTT ``vtt``) and OpenAI's transcription response formats (``text``, ``json``,
``verbose_json``). The command line (``canary-triton transcribe --format srt|vtt``) and the
gateway (``response_format``) both write them with these functions.

``segments`` are :class:`~canary_triton.longform.segment.Segment` (seconds); a segment whose text
has no words gets no subtitle cue.
"""

from __future__ import annotations

import json
from typing import Sequence

from canary_triton.longform.segment import Segment

#: Every format :func:`render` writes, and those that carry timing (they need the segments).
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
TIMED_FORMATS = ("srt", "vtt", "verbose_json")
#: The language ``verbose_json`` reports (Canary-Qwen-2.5B transcribes English).
LANGUAGE = "english"


def timestamp(seconds: float, decimal: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SubRip; ``decimal="."``: WebVTT), rounded to the millisecond."""
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{decimal}{ms % 1000:03d}"


def _spoken(segments: Sequence[Segment]) -> list[Segment]:
    return [s for s in segments if s.text.strip()]


def srt(segments: Sequence[Segment]) -> str:
    """SubRip: one numbered block per segment with words, ``start --> end`` then its text."""
    return "".join(
        f"{i}\n{timestamp(s.start)} --> {timestamp(s.end)}\n{s.text}\n\n" for i, s in enumerate(_spoken(segments), 1)
    )


def vtt(segments: Sequence[Segment]) -> str:
    """WebVTT: the header, then one cue per segment with words."""
    return "WEBVTT\n\n" + "".join(
        f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text}\n\n" for s in _spoken(segments)
    )


def _usage(duration_s: float) -> dict:
    return {"type": "duration", "seconds": round(duration_s, 3)}


def verbose_json(text: str, segments: Sequence[Segment], duration_s: float) -> dict:
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
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
            }
            for i, s in enumerate(segments)
        ],
        "usage": _usage(duration_s),
    }


def render(fmt: str, text: str, segments: Sequence[Segment] | None, duration_s: float) -> str:
    """The body for one format of :data:`FORMATS` (``segments`` needed for the timed ones)."""
    if fmt == "json":
        return json.dumps({"text": text, "usage": _usage(duration_s)}, ensure_ascii=False)
    if fmt == "text":
        return text
    if fmt == "verbose_json":
        return json.dumps(verbose_json(text, segments or [], duration_s), ensure_ascii=False)
    if fmt == "srt":
        return srt(segments or [])
    if fmt == "vtt":
        return vtt(segments or [])
    raise ValueError(f"unknown response_format {fmt!r}; use one of {', '.join(FORMATS)}")
