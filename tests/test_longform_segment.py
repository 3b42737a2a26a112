"""canary_triton/longform/segment.py: the typed, frozen Segment and its JSON wire form (what
``canary_qwen_long`` sends as ``segments``; unchanged by the type)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from canary_triton.longform.segment import Segment, segments_from_wire, segments_to_wire


def test_a_segment_is_frozen_seconds_and_text():
    s = Segment(1, 2.5, "héllo")
    assert (s.start, s.end, s.text, s.duration) == (1.0, 2.5, "héllo", 1.5)
    assert isinstance(s.start, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.text = "x"


def test_the_wire_form_is_the_json_the_long_form_model_always_sent():
    segments = [Segment(0.0, 1.25, "turn on"), Segment(1.5, 3725.25, "the light ü")]
    wire = segments_to_wire(segments)
    assert (
        wire
        == '[{"start": 0.0, "end": 1.25, "text": "turn on"}, {"start": 1.5, "end": 3725.25, "text": "the light ü"}]'
    )
    assert segments_from_wire(wire) == segments
    assert [Segment.from_json(o) for o in json.loads(wire)] == segments
    assert segments[0].to_json() == {"start": 0.0, "end": 1.25, "text": "turn on"}
    assert segments_to_wire([]) == "[]" and segments_from_wire("[]") == []
    # integers and extra keys from another writer are read
    assert Segment.from_json({"start": 0, "end": 1, "text": "x", "id": 3}) == Segment(0.0, 1.0, "x")


@pytest.mark.parametrize(
    "obj,message",
    [
        ({"start": 0, "text": "x"}, "lacks end"),
        ({"start": 2, "end": 1, "text": "x"}, "0 <= start <= end, got start 2 s, end 1 s"),
        ({"start": -1, "end": 1, "text": "x"}, "0 <= start <= end"),
        ({"start": "0", "end": 1, "text": "x"}, "segment start must be a finite number of seconds, got '0'"),
        ({"start": 0, "end": float("nan"), "text": "x"}, "segment end must be a finite number"),
        ({"start": 0, "end": True, "text": "x"}, "segment end must be a finite number"),
        ({"start": 0, "end": 1, "text": 5}, "segment text must be a string, got int"),
        (["not", "an", "object"], "a segment must be a JSON object, got list"),
    ],
)
def test_a_bad_segment_is_refused_naming_the_field(obj, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Segment.from_json(obj)


def test_the_wire_must_be_an_array():
    with pytest.raises(ValueError, match="segments must be a JSON array, got dict"):
        segments_from_wire('{"start": 0}')
