"""The asyncio client: the same calls as ``CanaryClient``, as coroutines.

    async with AsyncCanaryClient("127.0.0.1:8001") as c:
        text = await c.transcribe("a.flac")
        results = await c.transcribe_many(paths, concurrency=32)
        async for piece in c.stream("a.flac"):
            ...
        transcript, answer = await c.transcribe_and_ask("a.flac", "Who is speaking?")

Both clients build each request with the same ``api.*_call`` functions (model, tensors, outputs,
parsing); only sending differs.

Cancelling the task that awaits a gRPC call cancels the request on the server (the LLM stops
generating between two steps and frees its batch slot); ``timeout_s`` does the same at its
deadline. Retries on UNAVAILABLE use the same backoff as the synchronous client.
"""

from __future__ import annotations

import asyncio
import time
from asyncio import sleep  # module-level, so a test records the waits without patching asyncio.sleep
from typing import AsyncIterator, Callable, Sequence

import numpy as np

from canary_triton import contract as C
from canary_triton.client.audio_input import Audio, AudioLike, as_audio
from canary_triton.client.calls import (
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
from canary_triton.client.options import (
    ClientOptions,
    ServerError,
    backoff_delays,
    resolve_options,
    retry_delay,
    server_error,
)
from canary_triton.errors import CanaryTritonError
from canary_triton.longform.segment import Segment

# tritonclient's asyncio modules are imported when a client is made (as in api.py).


def _aio_module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc.aio as m
    else:
        import tritonclient.http.aio as m
    return m


class AsyncCanaryClient:
    def __init__(self, url: str | None = None, protocol: str | None = None, options: ClientOptions | None = None):
        self.opts = opts = resolve_options(options, url, protocol)
        self._m = _aio_module(opts.protocol)
        if opts.protocol == "http":
            self._client = self._m.InferenceServerClient(opts.url, conn_timeout=opts.timeout_s)
        else:
            self._client = self._m.InferenceServerClient(opts.url)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> "AsyncCanaryClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until the server and the entry model are ready (raises ServerError on timeout)."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                if await self._client.is_server_ready() and await self._client.is_model_ready(self.opts.model):
                    return
            except Exception as e:  # noqa: BLE001  not up yet
                last = str(e)
            await sleep(0.5)
        raise ServerError(f"server at {self.opts.url} not ready after {timeout_s:.0f} s {last}".strip(), "UNAVAILABLE")

    async def is_ready(self, models: Sequence[str] = ()) -> bool:
        """Whether the server, the entry model and ``models`` are ready now (False if unreachable)."""
        try:
            if not await self._client.is_server_ready():
                return False
            for m in (self.opts.model, *models):
                if not await self._client.is_model_ready(m):
                    return False
            return True
        except Exception:  # noqa: BLE001  unreachable counts as not ready
            return False

    async def infer(self, model: str, arrays: dict[str, np.ndarray], output: str) -> str:
        """One request with retries on UNAVAILABLE; returns the first string of ``output``."""
        return (await self.infer_strings(model, arrays, [output]))[output]

    async def infer_strings(self, model: str, arrays: dict[str, np.ndarray], output_names: list[str]) -> dict[str, str]:
        """One request with retries on UNAVAILABLE; the first string of each requested output."""
        from tritonclient.utils import InferenceServerException

        tensors = make_inputs(self._m, arrays)
        outputs = [self._m.InferRequestedOutput(o) for o in output_names]
        kwargs = {"client_timeout": self.opts.timeout_s} if self.opts.protocol == "grpc" else {}
        delays = backoff_delays(self.opts)
        while True:
            try:
                if self.opts.protocol == "http":
                    result = await asyncio.wait_for(
                        self._client.infer(model, tensors, outputs=outputs, headers=self.opts.headers or None),
                        self.opts.timeout_s,
                    )
                else:
                    result = await self._client.infer(
                        model, tensors, outputs=outputs, headers=self.opts.headers or None, **kwargs
                    )
                return {o: first_string(result, o) for o in output_names}
            except asyncio.TimeoutError:
                raise ServerError(
                    f"{model}: no answer within {self.opts.timeout_s:.0f} s", "DEADLINE_EXCEEDED"
                ) from None
            except (InferenceServerException, ConnectionError, OSError) as e:
                await sleep(retry_delay(server_error(model, e, self.opts.url), delays, self.opts.retries))

    async def call(self, c: Call):
        """Send one ``Call`` (with retries) and parse its answer."""
        return c.parse(await self.infer_strings(c.model, c.arrays, list(c.outputs)))

    async def transcribe(
        self,
        audio: AudioLike | Audio,
        sample_rate: int | None = None,
        max_new_tokens: int | None = None,
        long_form: bool | None = None,
    ) -> str:
        a = await asyncio.to_thread(as_audio, audio, sample_rate)
        return await self.call(transcribe_call(self.opts, a, max_new_tokens, long_form))

    async def transcribe_segments(
        self, audio: AudioLike | Audio, sample_rate: int | None = None, max_new_tokens: int | None = None
    ) -> list[Segment]:
        """Long-form with timing: a :class:`Segment` (start, end in seconds, text) per segment."""
        a = await asyncio.to_thread(as_audio, audio, sample_rate)
        return await self.call(segments_call(a, max_new_tokens))

    async def transcribe_many(
        self,
        audios: Sequence[AudioLike | Audio],
        concurrency: int = 8,
        max_new_tokens: int | None = None,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int, src) -> Result:
            async with gate:
                t0 = time.perf_counter()
                a = None
                try:
                    a = await asyncio.to_thread(as_audio, src)
                    text = await self.call(transcribe_call(self.opts, a, max_new_tokens, None))
                    r = item_result(i, src, a, t0, text=text)
                except CanaryTritonError as e:
                    r = item_result(i, src, a, t0, error=str(e))
            if on_result is not None:
                on_result(r)
            return r

        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(audios))))

    async def stream(
        self,
        audio: AudioLike | Audio,
        sample_rate: int | None = None,
        max_new_tokens: int | None = None,
        long_form: bool | None = None,
    ) -> AsyncIterator[str]:
        """Partial transcripts (gRPC only). The stream is closed after the one request, so the
        server ends it when the last partial is sent; breaking out early cancels the request."""
        if self.opts.protocol != "grpc":
            raise CanaryTritonError("streaming needs the gRPC protocol; use protocol='grpc'")
        a = await asyncio.to_thread(as_audio, audio, sample_rate)
        inputs = make_inputs(self._m, audio_request(a, max_new_tokens))
        model = stream_model(self.opts, a, long_form)

        async def requests():
            yield {"model_name": model, "inputs": inputs}

        responses = self._client.stream_infer(
            requests(), stream_timeout=self.opts.timeout_s, headers=self.opts.headers or None
        )
        done = False
        try:
            async for result, error in responses:
                if error is not None:
                    raise ServerError(f"{model}: {error.message()}", str(error.status() or ""))
                if result.get_response().outputs:
                    yield first_string(result, C.TRANSCRIPT.name)
            done = True
        finally:
            if not done:
                responses.cancel()

    async def ask(
        self,
        instruction: str,
        transcript: str | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> str:
        """LLM mode (base Qwen3, adapter off): an instruction, optionally about a transcript."""
        return await self.call(ask_call(instruction, transcript, max_new_tokens, temperature, top_p, seed))

    async def ask_result(
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
        return await self.call(ask_result_call(instruction, transcript, max_new_tokens, temperature, top_p, seed))

    async def summarize(self, transcript: str, max_new_tokens: int | None = None) -> str:
        """LLM mode with the contract's summary instruction."""
        return await self.call(summarize_call(transcript, max_new_tokens))

    async def transcribe_and_ask(
        self,
        audio: AudioLike | Audio,
        instruction: str,
        sample_rate: int | None = None,
        max_new_tokens: int | None = None,
    ) -> tuple[str, str]:
        """One request to ``canary_qwen_ask``: (transcript, answer)."""
        a = await asyncio.to_thread(as_audio, audio, sample_rate)
        return await self.call(transcribe_and_ask_call(a, instruction, max_new_tokens))

    async def transcribe_and_ask_result(
        self,
        audio: AudioLike | Audio,
        instruction: str,
        sample_rate: int | None = None,
        max_new_tokens: int | None = None,
    ) -> tuple[str, Answer]:
        """As :meth:`transcribe_and_ask`, typed: (transcript, :class:`Answer`)."""
        a = await asyncio.to_thread(as_audio, audio, sample_rate)
        return await self.call(transcribe_and_ask_result_call(a, instruction, max_new_tokens))
