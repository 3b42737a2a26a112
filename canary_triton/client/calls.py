"""What each client call sends and how its answer is read, shared by ``CanaryClient`` and
``AsyncCanaryClient`` so both send exactly the same requests: the input arrays, the entry model
(ensemble or long form by duration), the outputs asked for and the typed results (``Result``,
``Answer``). Nothing here imports tritonclient."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from canary_triton import contract as C
from canary_triton.client.audio_input import Audio
from canary_triton.client.options import _TRITON_TYPES, ClientOptions
from canary_triton.longform.segment import segments_from_wire


def make_inputs(m, arrays: dict[str, np.ndarray]):
    tensors = []
    for name, arr in arrays.items():
        tensors.append(m.InferInput(name, list(arr.shape), _TRITON_TYPES[arr.dtype]))
        tensors[-1].set_data_from_numpy(arr)
    return tensors


def audio_request(audio: Audio, max_new_tokens: int | None) -> dict[str, np.ndarray]:
    arrays = {C.AUDIO.name: audio.samples.reshape(1, -1)}
    if max_new_tokens is not None:
        arrays[C.MAX_NEW_TOKENS.name] = np.array([[max_new_tokens]], dtype=np.int32)
    return arrays


def llm_request(
    text: str, max_new_tokens: int | None, temperature: float | None, top_p: float | None, seed: int | None
) -> dict[str, np.ndarray]:
    arrays = {C.TEXT_INPUT.name: np.array([[text.encode("utf-8")]], dtype=np.object_)}
    for spec, value, dtype in (
        (C.MAX_NEW_TOKENS, max_new_tokens, np.int32),
        (C.TEMPERATURE, temperature, np.float32),
        (C.TOP_P, top_p, np.float32),
        (C.SEED, seed, np.uint64),
    ):
        if value is not None:
            arrays[spec.name] = np.array([[value]], dtype=dtype)
    return arrays


def first_string(result, name: str) -> str:
    value = result.as_numpy(name).reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Result:
    """One item of ``transcribe_many``: the text, or the error that item met (others go on)."""

    index: int
    name: str
    seconds: float  # audio duration
    text: str | None = None
    error: str | None = None
    latency_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Answer:
    """An LLM-mode answer (``ask_result``): its text and why it ended, ``stop`` (the model ended
    it) or ``length`` (``max_new_tokens`` cut it), as ``contract.FinishReason``."""

    text: str
    finish_reason: C.FinishReason

    @property
    def truncated(self) -> bool:
        """Whether ``max_new_tokens`` cut the answer."""
        return self.finish_reason is C.FinishReason.LENGTH


def answer_of(out: dict[str, str]) -> Answer:
    """The ``text_output`` and ``finish_reason`` strings of an LLM-mode response as an Answer."""
    return Answer(out[C.TEXT_OUTPUT.name], C.FinishReason(out[C.FINISH_REASON.name]))


def entry_model(opts: ClientOptions, audio: Audio, long_form: bool | None) -> str:
    """The ensemble, or canary_qwen_long for audio over the model's 40 s (``long_form=None``:
    chosen by duration)."""
    if long_form is None:
        long_form = audio.seconds > C.MAX_AUDIO_SECONDS
    return C.LONG_FORM_MODEL if long_form else opts.model


def stream_model(opts: ClientOptions, audio: Audio, long_form: bool | None) -> str:
    """The decoupled entry point that streams what ``entry_model`` would answer in one piece."""
    return C.LONG_FORM_STREAM_MODEL if entry_model(opts, audio, long_form) == C.LONG_FORM_MODEL else C.STREAM_MODEL


@dataclass(frozen=True)
class Call:
    """One request as plain data: both clients build it with the functions below and only differ
    in how they send it (``outputs`` are string tensors; ``parse`` turns their first strings into
    the call's result)."""

    model: str
    arrays: dict
    outputs: tuple[str, ...]
    parse: Callable[[dict[str, str]], object]


def _only(name: str) -> Callable[[dict[str, str]], str]:
    return lambda out: out[name]


def transcribe_call(opts: ClientOptions, audio: Audio, max_new_tokens: int | None, long_form: bool | None) -> Call:
    """``transcript`` of the ensemble (or of canary_qwen_long for audio over 40 s)."""
    return Call(
        entry_model(opts, audio, long_form),
        audio_request(audio, max_new_tokens),
        (C.TRANSCRIPT.name,),
        _only(C.TRANSCRIPT.name),
    )


def segments_call(audio: Audio, max_new_tokens: int | None) -> Call:
    """``segments`` of canary_qwen_long (JSON on the wire) as :class:`Segment`\ s."""
    return Call(
        C.LONG_FORM_MODEL,
        audio_request(audio, max_new_tokens),
        (C.SEGMENTS.name,),
        lambda out: segments_from_wire(out[C.SEGMENTS.name]),
    )


def ask_call(
    instruction: str,
    transcript: str | None,
    max_new_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
) -> Call:
    """``text_output`` of canary_qwen_llm for the LLM-mode text built from instruction + transcript."""
    text = C.llm_mode_text(instruction, transcript)
    return Call(
        C.LLM_MODE_MODEL,
        llm_request(text, max_new_tokens, temperature, top_p, seed),
        (C.TEXT_OUTPUT.name,),
        _only(C.TEXT_OUTPUT.name),
    )


def ask_result_call(
    instruction: str,
    transcript: str | None,
    max_new_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
) -> Call:
    """As :func:`ask_call`, with ``finish_reason`` too: an :class:`Answer`."""
    c = ask_call(instruction, transcript, max_new_tokens, temperature, top_p, seed)
    return replace(c, outputs=(C.TEXT_OUTPUT.name, C.FINISH_REASON.name), parse=answer_of)


def summarize_call(transcript: str, max_new_tokens: int | None) -> Call:
    return ask_call(C.SUMMARIZE_INSTRUCTION, transcript, max_new_tokens, None, None, None)


def transcribe_and_ask_call(audio: Audio, instruction: str, max_new_tokens: int | None) -> Call:
    """One request to canary_qwen_ask: (``transcript``, ``text_output``)."""
    arrays = llm_request(instruction, max_new_tokens, None, None, None)
    arrays[C.AUDIO.name] = audio.samples.reshape(1, -1)
    return Call(
        C.ASK_MODEL,
        arrays,
        (C.TRANSCRIPT.name, C.TEXT_OUTPUT.name),
        lambda out: (out[C.TRANSCRIPT.name], out[C.TEXT_OUTPUT.name]),
    )


def transcribe_and_ask_result_call(audio: Audio, instruction: str, max_new_tokens: int | None) -> Call:
    """As :func:`transcribe_and_ask_call`, with ``finish_reason`` too: (transcript, :class:`Answer`)."""
    c = transcribe_and_ask_call(audio, instruction, max_new_tokens)
    return replace(
        c,
        outputs=(*c.outputs, C.FINISH_REASON.name),
        parse=lambda out: (out[C.TRANSCRIPT.name], answer_of(out)),
    )


def source_name(index: int, src) -> str:
    """What results and errors call an input: its path or name, else its position."""
    if isinstance(src, Audio):
        return src.name
    if isinstance(src, (bytes, bytearray, memoryview, np.ndarray, tuple)):
        return f"<item {index}>"
    return str(src)


def item_result(
    index: int, src, audio: Audio | None, t0: float, text: str | None = None, error: str | None = None
) -> Result:
    """One ``transcribe_many`` item: its text, or the error it met (``audio`` None: not decoded)."""
    if audio is None:
        return Result(index, source_name(index, src), 0.0, error=error)
    return Result(
        index, source_name(index, src), audio.seconds, text=text, error=error, latency_s=time.perf_counter() - t0
    )
