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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from time import sleep  # module-level, so a test records the waits without patching time.sleep for every thread
from typing import Callable, Iterator, Sequence

import numpy as np

from canary_triton import contract as C
from canary_triton.client.audio_input import Audio, AudioLike, as_audio
from canary_triton.client.calls import (  # noqa: E402
    Answer,
    Call,
    Result,
    ask_call,
    ask_result_call,
    audio_request,
    first_string,
    item_result,
    make_inputs,
    segments_call,
    stream_model,
    summarize_call,
    transcribe_and_ask_call,
    transcribe_and_ask_result_call,
    transcribe_call,
)
from canary_triton.client.options import (  # noqa: E402
    ClientOptions,
    ServerError,
    backoff_delays,
    protocol_module,
    resolve_options,
    retry_delay,
    server_error,
)
from canary_triton.errors import CanaryTritonError
from canary_triton.longform.segment import Segment


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
