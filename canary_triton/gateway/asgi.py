"""ASGI plumbing: the gate every request passes (API key, in-flight bound, access log), bounded
body reading, and running a Triton call so that a client who disconnects cancels it.

Cancelling the asyncio task that awaits the async client's gRPC call cancels the request on the
server (see ``canary_triton/client/aio.py``); ``until_disconnect`` does that when the client leaves.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, TypeVar

from canary_triton.gateway.openai_errors import RATE_LIMIT, GatewayError, bad_request
from canary_triton.gateway.options import API_KEY_ENV, GatewayOptions

log = logging.getLogger("canary_triton.gateway.access")
T = TypeVar("T")

#: Requests counted against the in-flight bound (uploads and Triton calls); the rest are cheap.
BOUNDED_PATHS = ("/v1/audio/transcriptions", "/v1/chat/completions")
#: Status logged for a request whose client went away before its answer.
CLIENT_GONE_STATUS = 499
#: ``scope`` key where handlers leave figures for the access log (never content).
LOG_KEY = "canary_triton.log"


class ClientGone(Exception):
    """The client disconnected; its Triton request was cancelled."""


async def _wait_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(receive, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` as a task; if the client disconnects first, cancel it (and with it the
    gRPC call on the server) and raise ClientGone. The request body must be read already."""
    task = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except BaseException:  # noqa: BLE001  cancelled (or failed while cancelling): nobody left to tell
        pass
    raise ClientGone()


async def drain(receive, cap: int) -> None:
    """Read and drop the rest of a request body (up to ``cap`` bytes), so that an early answer
    reaches a client still uploading instead of a reset connection."""
    seen = 0
    while seen < cap:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def too_large(size: int, limit: int) -> GatewayError:
    return bad_request(
        f"the upload is {size / 2**20:.1f} MiB; the limit is {limit / 2**20:.1f} MiB (gateway --max-upload-mb)",
        "file",
        "file_too_large",
    )


async def read_body(receive, headers, limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes (over it: 400, after draining the rest)."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await drain(receive, 2 * limit)
        raise too_large(int(declared), limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await drain(receive, limit)
            raise too_large(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes):
    """An ASGI ``receive`` that hands over an already read body (for the multipart parser)."""
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class EventStream:
    """A ``text/event-stream`` answer whose producer is cancelled when the client disconnects
    (Starlette's StreamingResponse notices a disconnect only at its next write)."""

    def __init__(self, events: AsyncIterator[bytes]):
        self.events = events

    async def __call__(self, scope, receive, send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )

        async def pump() -> None:
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            await until_disconnect(receive, pump())
        except ClientGone:
            scope.setdefault(LOG_KEY, {})["client_gone"] = True
        finally:
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()


@dataclass
class Load:
    """Requests in flight now (those under the bound); ``/health`` reports it."""

    in_flight: int = 0


class Gate:
    """Outermost middleware: API key (401), in-flight bound (429 with Retry-After), request id
    and one access-log line per request: method, path, status, time, sizes, audio seconds.
    Never the audio, the transcript, the prompt or the messages."""

    def __init__(self, app, opts: GatewayOptions, load: Load):
        self.app = app
        self.opts = opts
        self.load = load
        self._key = opts.api_key.encode("utf-8") if opts.api_key else None

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if self._key is None:
            return True
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)

    async def _reject(self, err: GatewayError, scope, receive, send) -> None:
        await drain(receive, self.opts.max_upload_bytes + 2**20)
        await err.response()(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        rid = uuid.uuid4().hex[:16]
        info = scope.setdefault(LOG_KEY, {})
        seen = {"status": None, "in": 0, "out": 0}

        async def counting_receive():
            message = await receive()
            seen["in"] += len(message.get("body", b""))
            return message

        async def tagged_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
            await send(message)

        path = scope.get("path", "")
        headers = dict(scope.get("headers", []))
        bounded = scope.get("method") == "POST" and path in BOUNDED_PATHS
        counted = False  # this request holds one of the in-flight places until its log line is written
        try:
            if path.startswith("/v1/") and not self._authorized(headers):
                await self._reject(
                    GatewayError(
                        401,
                        "missing or wrong API key: send 'Authorization: Bearer KEY' with "
                        f"the key the gateway was started with (${API_KEY_ENV})",
                        code="invalid_api_key",
                    ),
                    scope,
                    counting_receive,
                    tagged_send,
                )
            elif bounded and self.load.in_flight >= self.opts.max_in_flight:
                await self._reject(
                    GatewayError(
                        429,
                        f"{self.load.in_flight} requests in flight, the gateway's limit "
                        f"(--max-in-flight {self.opts.max_in_flight}); retry after "
                        f"{self.opts.retry_after_s} s",
                        RATE_LIMIT,
                        None,
                        "rate_limit_exceeded",
                        {"Retry-After": str(self.opts.retry_after_s)},
                    ),
                    scope,
                    counting_receive,
                    tagged_send,
                )
            elif bounded:
                self.load.in_flight += 1
                counted = True
                await self.app(scope, counting_receive, tagged_send)
            else:
                await self.app(scope, counting_receive, tagged_send)
        finally:
            status = CLIENT_GONE_STATUS if info.get("client_gone") or seen["status"] is None else seen["status"]
            audio = info.get("audio_s")
            log.info(
                "%s %s %s %s %d %.1fms in=%dB out=%dB%s",
                rid,
                (scope.get("client") or ("-",))[0],
                scope.get("method"),
                path,
                status,
                (time.perf_counter() - t0) * 1e3,
                seen["in"],
                seen["out"],
                f" audio={audio:.2f}s" if audio is not None else "",
            )
            if counted:
                self.load.in_flight -= 1
