"""canary_triton/client/aio.py without a server: ``AsyncCanaryClient`` over a stand-in for tritonclient's asyncio
client: what each call sends, retries with the shared backoff, the HTTP deadline, cancellation,
the concurrency bound of ``transcribe_many``, readiness and streaming (served: tests/test_client.py)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from canary_triton import contract as C
from canary_triton.client import aio
from canary_triton.client.aio import AsyncCanaryClient
from canary_triton.client.calls import Answer
from canary_triton.client.options import ClientOptions, ServerError
from canary_triton.errors import CanaryTritonError
from canary_triton.longform.segment import Segment

SR = C.MelParams().sample_rate
AUDIO = np.zeros(SR // 10, np.float32)


class Result:
    def __init__(self, strings: dict[str, str]):
        self.strings = strings

    def as_numpy(self, name):
        return np.array([[self.strings[name].encode()]], dtype=np.object_)

    def get_response(self):
        return type("Response", (), {"outputs": list(self.strings)})()


class FakeAioTriton:
    """tritonclient's asyncio InferenceServerClient as AsyncCanaryClient uses it."""

    def __init__(self, answer=None, ready=(True, {})):
        self.answer, self.calls, self.closed = answer, [], False
        self.server_ready, self.model_ready = ready

    async def infer(self, model, inputs, outputs=None, headers=None, **kwargs):
        self.calls.append((model, {t.name(): t for t in inputs}, [o.name() for o in outputs], headers, kwargs))
        return Result(await self.answer(model, {t.name(): t for t in inputs}))

    async def is_server_ready(self):
        if isinstance(self.server_ready, Exception):
            raise self.server_ready
        return self.server_ready

    async def is_model_ready(self, model):
        return self.model_ready.get(model, True)

    async def close(self):
        self.closed = True


async def client_with(fake, **opts) -> AsyncCanaryClient:
    c = AsyncCanaryClient(options=ClientOptions(url="127.0.0.1:1", **opts))
    await c._client.close()
    c._client = fake
    return c


def answering(strings: dict[str, str]):
    async def answer(model, arrays):
        return strings

    return answer


def test_each_call_goes_to_its_model_with_its_tensors_deadline_and_headers():
    fake = FakeAioTriton(
        answering(
            {
                C.TRANSCRIPT.name: "t",
                C.TEXT_OUTPUT.name: "a",
                C.FINISH_REASON.name: "length",
                C.SEGMENTS.name: json.dumps([{"start": 0, "end": 1, "text": "t"}]),
            }
        )
    )

    async def run():
        async with await client_with(fake, timeout_s=9.0, headers={"k": "v"}) as c:
            return (
                await c.transcribe(AUDIO, max_new_tokens=4),
                await c.transcribe_segments(AUDIO),
                await c.ask("Q?", "t", temperature=0.5),
                await c.summarize("t"),
                await c.transcribe_and_ask(AUDIO, "Q?"),
                await c.infer(C.ENSEMBLE_MODEL, {}, C.TRANSCRIPT.name),
                await c.ask_result("Q?", max_new_tokens=2),
                await c.transcribe_and_ask_result(AUDIO, "Q?"),
            )

    cut = Answer("a", C.FinishReason.LENGTH)
    assert asyncio.run(run()) == (
        "t",
        [Segment(0.0, 1.0, "t")],
        "a",
        "a",
        ("t", "a"),
        "t",
        cut,
        ("t", cut),
    )
    assert fake.closed
    models = [call[0] for call in fake.calls]
    assert models == [
        C.ENSEMBLE_MODEL,
        C.LONG_FORM_MODEL,
        C.LLM_MODE_MODEL,
        C.LLM_MODE_MODEL,
        C.ASK_MODEL,
        C.ENSEMBLE_MODEL,
        C.LLM_MODE_MODEL,
        C.ASK_MODEL,
    ]
    _, arrays, outputs, headers, kwargs = fake.calls[0]
    assert set(arrays) == {C.AUDIO.name, C.MAX_NEW_TOKENS.name} and outputs == [C.TRANSCRIPT.name]
    assert headers == {"k": "v"} and kwargs == {"client_timeout": 9.0}
    assert set(fake.calls[2][1]) == {C.TEXT_INPUT.name, C.TEMPERATURE.name}
    assert fake.calls[4][2] == [C.TRANSCRIPT.name, C.TEXT_OUTPUT.name]
    assert fake.calls[6][2] == [C.TEXT_OUTPUT.name, C.FINISH_REASON.name]
    assert fake.calls[7][2] == [C.TRANSCRIPT.name, C.TEXT_OUTPUT.name, C.FINISH_REASON.name]


def test_unavailable_is_retried_with_the_backoff_and_a_refusal_is_not(monkeypatch):
    waits: list[float] = []

    async def no_sleep(delay):
        waits.append(delay)

    monkeypatch.setattr(aio, "sleep", no_sleep)  # the backoff waits, recorded instead of slept
    failures = [InferenceServerException("queue full", "StatusCode.UNAVAILABLE"), ConnectionResetError("reset")]

    async def flaky(model, arrays):
        if failures:
            raise failures.pop(0)
        return {C.TRANSCRIPT.name: "third time"}

    async def refuse(model, arrays):
        raise InferenceServerException("input 'audio' is empty", "StatusCode.INVALID_ARGUMENT")

    async def run(answer, **opts):
        fake = FakeAioTriton(answer)
        async with await client_with(fake, **opts) as c:
            try:
                return await c.transcribe(AUDIO), len(fake.calls)
            except ServerError as e:
                return e, len(fake.calls)

    assert asyncio.run(run(flaky, retries=2, backoff_s=1.0)) == ("third time", 3)
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0
    waits.clear()
    err, calls = asyncio.run(run(refuse, retries=2))
    assert calls == 1 and waits == [] and not err.retryable and str(err) == "canary_qwen: input 'audio' is empty"


def test_an_http_request_past_its_deadline_is_an_error():
    async def hang(model, arrays):
        await asyncio.Event().wait()  # the server never answers

    async def run():
        async with await client_with(FakeAioTriton(hang), protocol="http", timeout_s=0.01) as c:
            with pytest.raises(ServerError) as e:
                await c.transcribe(AUDIO)
            return e.value

    err = asyncio.run(run())
    assert err.status == "DEADLINE_EXCEEDED" and str(err).startswith("canary_qwen: no answer within")


def test_cancelling_the_task_cancels_the_request_in_flight():
    async def run():
        started, seen = asyncio.Event(), []

        async def slow(model, arrays):
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        async with await client_with(FakeAioTriton(slow)) as c:
            task = asyncio.create_task(c.ask("a long story"))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return seen

    assert asyncio.run(run()) == ["cancelled"]  # not swallowed, not retried


class CountingSemaphore(asyncio.Semaphore):
    """asyncio.Semaphore that counts who asked for it and who got it (who waits: the difference)."""

    def __init__(self, value: int = 1):
        super().__init__(value)
        self.asked = self.got = 0

    async def acquire(self):
        self.asked += 1
        await super().acquire()
        self.got += 1
        return True


def test_transcribe_many_holds_at_most_concurrency_requests_in_flight_in_input_order(monkeypatch):
    gates: list[CountingSemaphore] = []
    monkeypatch.setattr(aio.asyncio, "Semaphore", lambda n: gates.append(CountingSemaphore(n)) or gates[-1])
    items = [np.zeros(n, np.float32) for n in (1600, 3200, 4800, 6400)] + [b""]

    async def run():
        state = {"inflight": 0, "most": 0}
        release = asyncio.Event()

        async def answer(model, arrays):
            state["inflight"] += 1
            state["most"] = max(state["most"], state["inflight"])
            gate = gates[0]
            # Requests in flight are held until every other item waits at the gate (a client with
            # no bound lets a third one in instead; one with a smaller bound holds fewer).
            if state["inflight"] > 2 or gate.asked - gate.got == len(items) - state["inflight"]:
                release.set()
            await release.wait()
            state["inflight"] -= 1
            return {C.TRANSCRIPT.name: str(arrays[C.AUDIO.name].shape()[1])}

        async with await client_with(FakeAioTriton(answer)) as c:
            seen = []
            results = await c.transcribe_many(items, concurrency=2, on_result=seen.append)
            with pytest.raises(ValueError, match="concurrency must be >= 1"):
                await c.transcribe_many(items, concurrency=0)
        return state["most"], results, seen

    most, results, seen = asyncio.run(run())
    assert most == 2
    assert [r.text for r in results] == ["1600", "3200", "4800", "6400", None]
    assert results[-1].error == "audio <bytes> is empty (0 bytes)" and sorted(r.index for r in seen) == [0, 1, 2, 3, 4]


def test_readiness():
    async def ready(fake, models=()):
        c = await client_with(fake)
        return await c.is_ready(models)

    assert asyncio.run(ready(FakeAioTriton()))
    assert not asyncio.run(ready(FakeAioTriton(ready=(False, {}))))
    assert not asyncio.run(ready(FakeAioTriton(ready=(True, {C.ENSEMBLE_MODEL: False}))))
    assert not asyncio.run(ready(FakeAioTriton(ready=(True, {C.LONG_FORM_MODEL: False})), [C.LONG_FORM_MODEL]))
    assert not asyncio.run(ready(FakeAioTriton(ready=(ConnectionRefusedError("down"), {}))))  # unreachable

    async def never_ready():
        c = await client_with(FakeAioTriton(ready=(False, {})))
        with pytest.raises(ServerError, match=r"server at 127\.0\.0\.1:1 not ready after 0 s") as e:
            await c.wait_ready(0)
        return e.value.status

    assert asyncio.run(never_ready()) == "UNAVAILABLE"


class FakeStream:
    """What ``stream_infer`` returns: an async iterator of (result, error) that can be cancelled."""

    def __init__(self, items):
        self.items, self.cancelled = list(items), False

    def __aiter__(self):
        return self._gen()

    async def _gen(self):
        for item in self.items:
            yield item

    def cancel(self):
        self.cancelled = True


def test_streaming_yields_each_partial_and_cancels_when_left_early():
    class StreamingFake(FakeAioTriton):
        def stream_infer(self, requests, stream_timeout=None, headers=None):
            self.stream = FakeStream(self.items)
            self.stream_args = (requests, stream_timeout)
            return self.stream

    final = type("Final", (), {"get_response": lambda self: type("R", (), {"outputs": []})()})()
    fake = StreamingFake()
    fake.items = [(Result({C.TRANSCRIPT.name: "hel"}), None), (Result({C.TRANSCRIPT.name: "lo"}), None), (final, None)]

    async def run():
        c = await client_with(fake, timeout_s=5.0)
        pieces = [piece async for piece in c.stream(AUDIO)]
        request = [r async for r in fake.stream_args[0]]
        return pieces, request

    pieces, request = asyncio.run(run())
    assert pieces == ["hel", "lo"] and not fake.stream.cancelled and fake.stream_args[1] == 5.0
    assert request[0]["model_name"] == C.STREAM_MODEL and [t.name() for t in request[0]["inputs"]] == [C.AUDIO.name]

    async def leave_early():
        c = await client_with(fake)
        stream = c.stream(AUDIO)
        first = await stream.__anext__()
        assert not fake.stream.cancelled
        await stream.aclose()  # what `break` out of `async for` leads to
        return first

    assert asyncio.run(leave_early()) == "hel" and fake.stream.cancelled


def test_a_stream_error_carries_the_servers_message():
    class StreamingFake(FakeAioTriton):
        def stream_infer(self, requests, stream_timeout=None, headers=None):
            return FakeStream(
                [(None, InferenceServerException("input 'audio' is empty", "StatusCode.INVALID_ARGUMENT"))]
            )

    async def run():
        c = await client_with(StreamingFake())
        with pytest.raises(ServerError) as e:
            async for _ in c.stream(AUDIO):
                pass
        return e.value

    err = asyncio.run(run())
    assert str(err) == f"{C.STREAM_MODEL}: input 'audio' is empty" and err.status == "StatusCode.INVALID_ARGUMENT"


def test_streaming_needs_grpc():
    async def run():
        c = AsyncCanaryClient("127.0.0.1:1", protocol="http")
        try:
            async for _ in c.stream(AUDIO):
                pass
        finally:
            await c.close()

    with pytest.raises(CanaryTritonError, match="streaming needs the gRPC protocol"):
        asyncio.run(run())
