"""canary_triton/gateway/transcription.py: OpenAI's transcription form fields validated (one 400
naming the field for each refusal), on a form built with Starlette's own multipart type. The
served transcriptions are in test_gateway.py."""

from __future__ import annotations

import pytest
from starlette.datastructures import FormData

from canary_triton.gateway.formats import RESPONSE_FORMATS
from canary_triton.gateway.openai_errors import GatewayError
from canary_triton.gateway.transcription import TranscriptionRequest, check_language, parse_transcription


def form(**fields) -> FormData:
    items = []
    for k, v in fields.items():
        for value in v if isinstance(v, list) else [v]:
            items.append((k.replace("__", "[]"), value))
    return FormData(items)


def test_the_defaults_with_only_a_model():
    assert parse_transcription(form(model="whisper-1")) == TranscriptionRequest("whisper-1", "json", False, 0.0)


@pytest.mark.parametrize("fmt", RESPONSE_FORMATS)
def test_every_response_format_is_accepted(fmt):
    assert parse_transcription(form(model="m", response_format=fmt)).response_format == fmt


@pytest.mark.parametrize(
    "value,want", [("true", True), ("1", True), (" TRUE ", True), ("false", False), ("0", False), ("", False)]
)
def test_stream_accepts_true_and_false_spellings(value, want):
    assert parse_transcription(form(model="m", stream=value)).stream is want


def test_unused_fields_are_accepted_and_segment_timestamps_too():
    r = parse_transcription(
        form(
            model="m",
            language="en-GB",
            prompt="anything",
            temperature="0.7",
            chunking_strategy="auto",
            timestamp_granularities__=["segment"],
            response_format="verbose_json",
        )
    )
    assert (r.temperature, r.response_format) == (0.7, "verbose_json")
    assert parse_transcription(form(model="m", timestamp_granularities="segment")).model == "m"


@pytest.mark.parametrize("language", [None, "", "en", "EN", "eng", "English", "en-US", "en_gb", " en "])
def test_english_in_any_usual_spelling_passes(language):
    assert check_language(language) is None


@pytest.mark.parametrize(
    "fields,param,message",
    [
        ({}, "model", "the 'model' field is required"),
        ({"model": ""}, "model", "the 'model' field is required"),
        (
            {"model": "m", "language": "de"},
            "language",
            "language 'de' is not supported: this model transcribes English",
        ),
        ({"model": "m", "language": "english-ish"}, "language", "'english-ish' is not supported"),
        (
            {"model": "m", "response_format": "diarized_json"},
            "response_format",
            "response_format 'diarized_json' is not supported",
        ),
        ({"model": "m", "stream": "yes"}, "stream", "'stream' must be true or false, got 'yes'"),
        (
            {"model": "m", "stream": "true", "response_format": "srt"},
            "response_format",
            "response_format 'srt' cannot be streamed",
        ),
        ({"model": "m", "temperature": "warm"}, "temperature", "'temperature' must be a number, got 'warm'"),
        ({"model": "m", "temperature": "1.5"}, "temperature", "'temperature' is 1.5; it must be between 0 and 1"),
        ({"model": "m", "temperature": "-0.1"}, "temperature", "'temperature' is -0.1"),
        (
            {"model": "m", "timestamp_granularities__": ["segment", "word"]},
            "timestamp_granularities",
            "'word' not available",
        ),
        ({"model": "m", "include__": ["logprobs"]}, "include", "include 'logprobs' is not available"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_field(fields, param, message):
    with pytest.raises(GatewayError) as e:
        parse_transcription(form(**fields))
    assert e.value.status == 400 and e.value.param == param and message in e.value.message
