"""A timed piece of a long-form transcript: what ``canary_qwen_long`` answers, the clients return
and the gateway and the command line format (srt, vtt, verbose_json).

On the wire (the ``segments`` output, contract.SEGMENTS) a list of segments is JSON,
``[{"start": s, "end": s, "text": "..."}]`` in seconds; :meth:`Segment.to_json` /
:meth:`Segment.from_json` are one segment's object, :func:`segments_to_wire` /
:func:`segments_from_wire` the whole string. (The audio regions the segmenter cuts, in samples,
are ``segmenter.Region``.)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class Segment:
    """``text`` spoken from ``start`` to ``end`` (seconds from the start of the recording)."""

    start: float
    end: float
    text: str

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"segment {name} must be a finite number of seconds, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 <= self.start <= self.end:
            raise ValueError(f"a segment must have 0 <= start <= end, got start {self.start:g} s, end {self.end:g} s")
        if not isinstance(self.text, str):
            raise ValueError(f"segment text must be a string, got {type(self.text).__name__}")

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        """The wire object: ``{"start": s, "end": s, "text": "..."}``."""
        return {"start": self.start, "end": self.end, "text": self.text}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Segment:
        """A segment from its wire object (other keys are ignored); a missing or bad field is a
        ValueError naming it."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"a segment must be a JSON object, got {type(obj).__name__}")
        missing = [k for k in ("start", "end", "text") if k not in obj]
        if missing:
            raise ValueError(f"segment {dict(obj)!r} lacks {', '.join(missing)}")
        return cls(obj["start"], obj["end"], obj["text"])


def segments_to_wire(segments: Iterable[Segment]) -> str:
    """The ``segments`` output: a JSON array of :meth:`Segment.to_json` objects (UTF-8 kept)."""
    return json.dumps([s.to_json() for s in segments], ensure_ascii=False)


def segments_from_wire(text: str) -> list[Segment]:
    """The ``segments`` output as segments (ValueError when it is not a JSON array of segments)."""
    items = json.loads(text)
    if not isinstance(items, list):
        raise ValueError(f"segments must be a JSON array, got {type(items).__name__}")
    return [Segment.from_json(item) for item in items]
