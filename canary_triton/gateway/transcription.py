"""``/v1/audio/transcriptions``: OpenAI's multipart fields, validated.

What each field does here:

- ``file``: any format the client library decodes (WAV, FLAC, OGG/Vorbis/Opus, MP3; more with
  ffmpeg on PATH), any rate and channel count. Audio over the model's 40 s goes to the long-form
  entry point by itself.
- ``language``: English only. Empty, ``en``, ``en-XX`` or ``english`` are accepted; any other is
  refused with 400 naming it.
- ``prompt``: accepted and not used. Canary-Qwen was trained with one fixed instruction
  ("Transcribe the following: <audio>"); another text in the prompt is out of its training
  distribution, so the gateway does not put it there.
- ``temperature``: 0 to 1 accepted; ASR decoding is greedy (as the model card and the Open ASR
  Leaderboard run it), so a non-zero value changes nothing. Outside 0..1: 400.
- ``response_format``: json, text, srt, vtt, verbose_json (``diarized_json`` and others: 400).
- ``stream``: true answers with server-sent events ``transcript.text.delta`` and one
  ``transcript.text.done`` (response_format json or text only).
- ``timestamp_granularities[]``: ``segment`` (the timed formats carry segments); ``word``: 400.
- ``include[]``: ``logprobs`` is not available: 400.
- ``chunking_strategy``: accepted and not used: the server's long-form path picks its own cuts.
"""

from __future__ import annotations

from dataclasses import dataclass

from canary_triton.gateway.formats import RESPONSE_FORMATS, STREAM_FORMATS
from canary_triton.gateway.openai_errors import bad_request

ENGLISH = ("en", "eng", "english")
MAX_TEMPERATURE = 1.0  # OpenAI's range for transcriptions


@dataclass(frozen=True)
class TranscriptionRequest:
    model: str
    response_format: str
    stream: bool
    temperature: float


def _values(form, name: str) -> list[str]:
    return [str(v) for v in (*form.getlist(name), *form.getlist(name + "[]"))]


def _bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    v = value.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise bad_request(f"'{name}' must be true or false, got {value!r}", name)


def check_language(language: str | None) -> None:
    if not language:
        return
    code = language.strip().lower()
    if code in ENGLISH or code.startswith("en-") or code.startswith("en_"):
        return
    raise bad_request(
        f"language {language!r} is not supported: this model transcribes English only "
        "(send 'en' or leave language out)",
        "language",
        "unsupported_language",
    )


def parse_transcription(form) -> TranscriptionRequest:
    """The request's settings from its multipart form (the ``file`` part is read by the caller)."""
    model = form.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("the 'model' field is required", "model", "missing_required_parameter")
    check_language(form.get("language") if isinstance(form.get("language"), str) else None)
    fmt = form.get("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise bad_request(
            f"response_format {fmt!r} is not supported; use one of {', '.join(RESPONSE_FORMATS)}", "response_format"
        )
    stream = _bool(form.get("stream"), "stream")
    if stream and fmt not in STREAM_FORMATS:
        raise bad_request(
            f"stream=true answers in {' or '.join(STREAM_FORMATS)} events; response_format {fmt!r} cannot be streamed",
            "response_format",
        )
    raw_t = form.get("temperature")
    try:
        temperature = float(raw_t) if raw_t not in (None, "") else 0.0
    except ValueError:
        raise bad_request(f"'temperature' must be a number, got {raw_t!r}", "temperature") from None
    if not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise bad_request(
            f"'temperature' is {temperature:g}; it must be between 0 and {MAX_TEMPERATURE:g} "
            "(decoding is greedy whatever the value)",
            "temperature",
        )
    granularities = _values(form, "timestamp_granularities")
    bad = [g for g in granularities if g != "segment"]
    if bad:
        raise bad_request(
            f"timestamp_granularities {', '.join(map(repr, bad))} not available; only 'segment' "
            "timestamps (from the long-form segmenter) exist",
            "timestamp_granularities",
        )
    include = _values(form, "include")
    if include:
        raise bad_request(f"include {', '.join(map(repr, include))} is not available from this model", "include")
    return TranscriptionRequest(model, fmt, stream, temperature)
