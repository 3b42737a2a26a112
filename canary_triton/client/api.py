"""The client library: transcribe, transcribe many, stream and ask, over gRPC or HTTP.

    from canary_triton.client import CanaryClient
    with CanaryClient("127.0.0.1:8001") as c:
        print(c.transcribe("meeting.mp3"))
        for piece in c.stream("meeting.mp3"):
            print(piece, end="", flush=True)
        print(c.ask("Who is speaking?", transcript=text))

One connection per client (gRPC channels and the HTTP pool are reused across calls and threads).
Requests that the server refuses with UNAVAILABLE (queue full, model loading, connection refused)
are retried with exponential backoff and jitter; every other error raises ``ServerError`` with
the server's own message. ``timeout_s`` is a deadline per attempt: gRPC cancels the request on
the server when it passes (the LLM stops generating and frees its slot).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from time import sleep  # module-level, so a test records the waits without patching time.sleep for every thread
from typing import Callable, Iterator, Sequence

import numpy as np

from canary_triton import contract as C
from canary_triton.client.audio_input import Audio, AudioLike, as_audio
from canary_triton.errors import CanaryTritonError
from canary_triton.longform.segment import Segment, segments_from_wire

# tritonclient is imported when a client connects: what takes only this module's options and
# request builders (the gateway's options, the CLI's parsers) does not load it.

_TRITON_TYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.int32): "INT32",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.object_): "BYTES",
}
DEFAULT_GRPC_URL = "127.0.0.1:8001"


class ServerError(CanaryTritonError):
    """The server answered with an error: ``status`` (gRPC code or HTTP status) and its message."""

    def __init__(self, message: str, status: str = "", retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class ClientOptions:
    url: str = DEFAULT_GRPC_URL
    protocol: str = "grpc"  # grpc | http
    model: str = C.ENSEMBLE_MODEL
    timeout_s: float = 120.0  # per attempt; gRPC cancels the request on the server when it passes
    retries: int = 4  # extra attempts after UNAVAILABLE
    backoff_s: float = 0.25  # first wait; doubles each attempt, with jitter
    max_backoff_s: float = 8.0
    headers: dict = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be grpc or http, got {self.protocol!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")


def protocol_module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as m
    else:
        import tritonclient.http as m
    return m


def is_retryable(status: str, message: str = "") -> bool:
    """UNAVAILABLE in either protocol: a full queue, a model not ready, a server not up yet."""
    s = status.upper()
    return "UNAVAILABLE" in s or s in ("503", "502") or C.QUEUE_FULL_MESSAGE.lower() in message.lower()


def server_error(model: str, exc: Exception, url: str) -> ServerError:
    """A tritonclient exception, or a connection failure (UNAVAILABLE), as a ServerError."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        return ServerError(f"{model}: {exc.message()}", status, is_retryable(status, exc.message() or ""))
    return ServerError(f"{model}: cannot reach {url}: {exc}", "UNAVAILABLE", True)


def retry_delay(err: ServerError, delays: Iterator[float], retries: int) -> float:
    """How long to wait before the next attempt; raises ``err`` when it is not retryable or the
    retries are used up."""
    if not err.retryable:
        raise err from None
    delay = next(delays, None)
    if delay is None:
        raise ServerError(f"{err} (gave up after {retries} retries)", err.status, True) from None
    return delay


def backoff_delays(opts: ClientOptions, rng: random.Random | None = None) -> Iterator[float]:
    """Exponential backoff with full jitter (AWS's recipe): uniform in [d/2, d], d doubling."""
    rng = rng or random.Random()
    d = opts.backoff_s
    for _ in range(opts.retries):
        yield rng.uniform(d / 2, d)
        d = min(d * 2, opts.max_backoff_s)


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


def resolve_options(options: ClientOptions | None, url: str | None, protocol: str | None) -> ClientOptions:
    """``options`` (default ClientOptions()) with ``url``/``protocol`` put in when given."""
    opts = options or ClientOptions()
    override = {k: v for k, v in (("url", url), ("protocol", protocol)) if v}
    return ClientOptions(**{**opts.__dict__, **override}) if override else opts


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


class CanaryClient:
    """Synchronous client (thread-safe: share one across threads)."""

    def __init__(
        self,
        url: str | None = None,
        protocol: str | None = None,
        options: ClientOptions | None = None,
        concurrency: int = 16,
    ):
        self.opts = opts = resolve_options(options, url, protocol)
        self._m = protocol_module(opts.protocol)
        if opts.protocol == "http":
            self._client = self._m.InferenceServerClient(
                opts.url,
                concurrency=max(1, concurrency),
                connection_timeout=opts.timeout_s,
                network_timeout=opts.timeout_s,
            )
        else:
            self._client = self._m.InferenceServerClient(opts.url)

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "CanaryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until the server and the entry model are ready (raises ServerError on timeout)."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                if self._client.is_server_ready() and self._client.is_model_ready(self.opts.model):
                    return
            except Exception as e:  # noqa: BLE001  not up yet
                last = str(e)
            sleep(0.5)
        raise ServerError(f"server at {self.opts.url} not ready after {timeout_s:.0f} s {last}".strip(), "UNAVAILABLE")

    def infer(self, model: str, arrays: dict[str, np.ndarray], output: str) -> str:
        """One request with retries on UNAVAILABLE; returns the first string of ``output``."""
        return self.infer_strings(model, arrays, [output])[output]

    def infer_strings(self, model: str, arrays: dict[str, np.ndarray], output_names: list[str]) -> dict[str, str]:
        """One request with retries on UNAVAILABLE; the first string of each requested output."""
        from tritonclient.utils import InferenceServerException

        tensors = make_inputs(self._m, arrays)
        outputs = [self._m.InferRequestedOutput(o) for o in output_names]
        kwargs = {"client_timeout": self.opts.timeout_s} if self.opts.protocol == "grpc" else {}
        delays = backoff_delays(self.opts)
        while True:
            try:
                result = self._client.infer(
                    model, tensors, outputs=outputs, headers=self.opts.headers or None, **kwargs
                )
                return {o: first_string(result, o) for o in output_names}
            except (InferenceServerException, ConnectionError, OSError) as e:  # OSError: HTTP connection refused/reset
                sleep(retry_delay(server_error(model, e, self.opts.url), delays, self.opts.retries))

    def call(self, c: Call):
        """Send one ``Call`` (with retries) and parse its answer."""
        return c.parse(self.infer_strings(c.model, c.arrays, list(c.outputs)))

    # -- ASR --------------------------------------------------------------------------------
    def transcribe(
        self,
        audio: AudioLike | Audio,
        sample_rate: int | None = None,
        max_new_tokens: int | None = None,
        long_form: bool | None = None,
    ) -> str:
        """Transcribe one clip (path, bytes, array at ``sample_rate`` or (array, rate)); audio
        longer than 40 s goes through the long-form entry point unless ``long_form=False``."""
        return self.call(transcribe_call(self.opts, as_audio(audio, sample_rate), max_new_tokens, long_form))

    def transcribe_segments(
        self, audio: AudioLike | Audio, sample_rate: int | None = None, max_new_tokens: int | None = None
    ) -> list[Segment]:
        """Long-form with timing: a :class:`Segment` (start, end in seconds, text) per segment."""
        return self.call(segments_call(as_audio(audio, sample_rate), max_new_tokens))

    def transcribe_many(
        self,
        audios: Sequence[AudioLike | Audio],
        concurrency: int = 8,
        max_new_tokens: int | None = None,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        """Transcribe many clips with at most ``concurrency`` requests in flight; results in input
        order. A clip that cannot be decoded or is refused gets ``error`` set; the rest go on."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")

        def one(i: int, src) -> Result:
            t0 = time.perf_counter()
            a = None
            try:
                a = as_audio(src)
                r = item_result(i, src, a, t0, text=self.call(transcribe_call(self.opts, a, max_new_tokens, None)))
            except CanaryTritonError as e:
                r = item_result(i, src, a, t0, error=str(e))
            if on_result is not None:
                on_result(r)
            return r

        with ThreadPoolExecutor(min(concurrency, max(1, len(audios)))) as pool:
            return list(pool.map(one, range(len(audios)), audios))

    def stream(
        self,
        audio: AudioLike | Audio,
        sample_rate: int | None = None,
        max_new_tokens: int | None = None,
        long_form: bool | None = None,
    ) -> Iterator[str]:
        """Partial transcripts as the model produces them (gRPC only); they concatenate to the
        transcript ``transcribe`` returns. Long-form audio streams one piece per segment, in
        order. Closing the iterator early cancels the request."""
        if self.opts.protocol != "grpc":
            raise CanaryTritonError(
                "streaming needs the gRPC protocol (Triton's HTTP API has no bidirectional "
                "streams); use --protocol grpc"
            )
        a = as_audio(audio, sample_rate)
        yield from self._stream(
            stream_model(self.opts, a, long_form), audio_request(a, max_new_tokens), C.TRANSCRIPT.name
        )

    def _stream(self, model: str, arrays: dict[str, np.ndarray], output: str) -> Iterator[str]:
        import tritonclient.grpc as grpcclient

        results: "queue.Queue" = queue.Queue()
        client = grpcclient.InferenceServerClient(self.opts.url)  # a stream owns its client
        client.start_stream(
            callback=lambda result, error: results.put((result, error)),
            stream_timeout=self.opts.timeout_s,
            headers=self.opts.headers or None,
        )
        finished = False
        try:
            client.async_stream_infer(
                model,
                make_inputs(grpcclient, arrays),
                request_id=f"s{threading.get_ident()}",
                enable_empty_final_response=True,
            )
            while True:
                try:
                    result, error = results.get(timeout=self.opts.timeout_s)
                except queue.Empty:
                    raise ServerError(
                        f"{model}: no response within {self.opts.timeout_s:.0f} s", "DEADLINE_EXCEEDED"
                    ) from None
                if error is not None:
                    raise ServerError(f"{model}: {error.message()}", str(error.status() or ""))
                response = result.get_response()
                if response.outputs:
                    yield first_string(result, output)
                final = response.parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    finished = True
                    return
        finally:
            client.stop_stream(cancel_requests=not finished)
            client.close()

    # -- LLM mode ---------------------------------------------------------------------------
    def ask(
        self,
        instruction: str,
        transcript: str | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> str:
        """LLM mode (base Qwen3, adapter off): an instruction, optionally about a transcript."""
        return self.call(ask_call(instruction, transcript, max_new_tokens, temperature, top_p, seed))

    def ask_result(
        self,
        instruction: str,
        transcript: str | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> Answer:
        """As :meth:`ask`, typed: the answer and its finish reason (``length`` when
        ``max_new_tokens`` cut it, else ``stop``)."""
        return self.call(ask_result_call(instruction, transcript, max_new_tokens, temperature, top_p, seed))

    def summarize(self, transcript: str, max_new_tokens: int | None = None) -> str:
        """LLM mode with the contract's summary instruction."""
        return self.call(summarize_call(transcript, max_new_tokens))

    def transcribe_and_ask(
        self,
        audio: AudioLike | Audio,
        instruction: str,
        sample_rate: int | None = None,
        max_new_tokens: int | None = None,
    ) -> tuple[str, str]:
        """One request to ``canary_qwen_ask``: the server transcribes the audio (long-form when over
        40 s), then answers the instruction about the transcript. Returns (transcript, answer)."""
        return self.call(transcribe_and_ask_call(as_audio(audio, sample_rate), instruction, max_new_tokens))

    def transcribe_and_ask_result(
        self,
        audio: AudioLike | Audio,
        instruction: str,
        sample_rate: int | None = None,
        max_new_tokens: int | None = None,
    ) -> tuple[str, Answer]:
        """As :meth:`transcribe_and_ask`, typed: (transcript, :class:`Answer`)."""
        return self.call(transcribe_and_ask_result_call(as_audio(audio, sample_rate), instruction, max_new_tokens))
