"""The gateway's ASGI app: OpenAI's audio and chat endpoints over the async client.

    POST /v1/audio/transcriptions   multipart (see transcription.py)  -> canary_qwen / canary_qwen_long
                                    stream=true                        -> canary_qwen_stream / _long_stream
    POST /v1/chat/completions       JSON (see chat.py)                 -> canary_qwen_llm
    GET  /v1/models, /v1/models/ID  the served model
    GET  /health                    200 when Triton and every entry model are ready, else 503 (readiness)
    GET  /health/live               200 while the gateway answers (liveness)

One ``AsyncCanaryClient`` (one gRPC channel) per app, opened and closed with the app's lifespan.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from canary_triton import contract as C
from canary_triton.client.aio import AsyncCanaryClient
from canary_triton.client.audio_input import Audio, decode_bytes
from canary_triton.client.calls import Call, audio_request, entry_model
from canary_triton.client.options import ClientOptions, ServerError
from canary_triton.errors import InputError
from canary_triton.gateway import chat
from canary_triton.gateway.asgi import LOG_KEY, ClientGone, EventStream, Gate, Load, read_body, replay, until_disconnect
from canary_triton.gateway.formats import MEDIA_TYPES, TIMED_FORMATS, delta_event, done_event, render, sse
from canary_triton.gateway.openai_errors import SERVER_ERROR, GatewayError, bad_request, from_server_error
from canary_triton.gateway.options import GatewayOptions
from canary_triton.gateway.transcription import parse_transcription
from canary_triton.longform.segment import Segment, segments_from_wire

log = logging.getLogger("canary_triton.gateway")

#: Every model a gateway request can reach (``/health`` waits for all of them).
ENTRY_MODELS = (
    C.ENSEMBLE_MODEL,
    C.STREAM_MODEL,
    C.LONG_FORM_MODEL,
    C.LONG_FORM_STREAM_MODEL,
    C.LLM_MODE_MODEL,
)
MAX_FILENAME = 120  # characters of the upload's name kept in error messages


def _endpoint(fn):
    """Errors as OpenAI's JSON: ours, the server's (via the client), undecodable audio, a client gone."""

    async def wrapped(request: Request):
        opts: GatewayOptions = request.app.state.options
        try:
            return await fn(request, opts, request.app.state.client)
        except GatewayError as e:
            return e.response()
        except ServerError as e:
            return from_server_error(e, opts.retry_after_s).response()
        except InputError as e:
            return bad_request(str(e), "file").response()
        except ClientGone:
            request.scope.setdefault(LOG_KEY, {})["client_gone"] = True
            return Response(status_code=499)
        except Exception:  # noqa: BLE001  a bug: logged with its traceback, the client gets a plain 500
            log.exception("unexpected error in %s", request.url.path)
            return GatewayError(500, "internal error in the gateway (see its log)", SERVER_ERROR).response()

    return wrapped


def check_model(name, opts: GatewayOptions) -> None:
    if not isinstance(name, str) or not name:
        raise bad_request("the 'model' field is required", "model", "missing_required_parameter")
    if name not in opts.model_names:
        raise GatewayError(
            404,
            f"model {name!r} is not served here; use {' or '.join(map(repr, opts.model_names))}",
            param="model",
            code="model_not_found",
        )


# -- transcriptions ----------------------------------------------------------------------------
async def _form(request: Request, body: bytes):
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise bad_request(
            f"send the audio as multipart/form-data with a 'file' part (got content type {ctype or 'none'!r})", "file"
        )
    try:
        return await Request(request.scope, replay(body)).form(max_files=1, max_fields=64)
    except HTTPException as e:
        raise bad_request(f"malformed multipart body: {e.detail}", "file") from None


async def _timed(client: AsyncCanaryClient, audio: Audio) -> tuple[str, list[Segment]]:
    """Text and segments: the long-form entry point's (one request for both) over 40 s; under
    it the clip is transcribed in one piece, one segment from 0 to its end."""
    if entry_model(client.opts, audio, None) == C.LONG_FORM_MODEL:
        call = Call(
            C.LONG_FORM_MODEL,
            audio_request(audio, None),
            (C.TRANSCRIPT.name, C.SEGMENTS.name),
            lambda out: (out[C.TRANSCRIPT.name], segments_from_wire(out[C.SEGMENTS.name])),
        )
        return await client.call(call)
    text = await client.transcribe(audio)
    return text, ([Segment(0.0, round(audio.seconds, 3), text)] if text.strip() else [])


async def _transcript_events(client: AsyncCanaryClient, audio: Audio, retry_after_s: int) -> AsyncIterator[bytes]:
    """``transcript.text.delta`` per partial transcript, then ``transcript.text.done``. A server
    error before the first delta is raised (an HTTP error answer); after it, it is sent as an
    OpenAI error event (the ``openai`` client raises it)."""
    pieces: list[str] = []
    try:
        async for piece in client.stream(audio):
            if piece:
                pieces.append(piece)
                yield delta_event(piece)
    except ServerError as e:
        if not pieces:
            raise
        yield sse(from_server_error(e, retry_after_s).body())
        return
    yield done_event("".join(pieces))


async def _first_then_rest(first: bytes, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for e in events:
        yield e


@_endpoint
async def transcriptions(request: Request, opts: GatewayOptions, client: AsyncCanaryClient):
    body = await read_body(request.receive, request.headers, opts.max_upload_bytes)
    form = await _form(request, body)
    try:
        req = parse_transcription(form)
        check_model(req.model, opts)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise bad_request("the 'file' part is required (the audio file)", "file", "missing_required_parameter")
        name = (upload.filename or "upload")[:MAX_FILENAME]
        raw = await upload.read()
    finally:
        await form.close()
    audio = await asyncio.to_thread(decode_bytes, raw, name)
    request.scope.setdefault(LOG_KEY, {})["audio_s"] = audio.seconds
    if req.stream:
        events = _transcript_events(client, audio, opts.retry_after_s)
        try:  # the first event before the headers: an error up front is still a proper HTTP error
            first = await until_disconnect(request.receive, events.__anext__())
        except StopAsyncIteration:
            first = done_event("")
        return EventStream(_first_then_rest(first, events))
    if req.response_format in TIMED_FORMATS:
        text, segments = await until_disconnect(request.receive, _timed(client, audio))
    else:
        text, segments = await until_disconnect(request.receive, client.transcribe(audio)), None
    return Response(
        render(req.response_format, text, segments, audio.seconds), media_type=MEDIA_TYPES[req.response_format]
    )


# -- chat completions --------------------------------------------------------------------------
async def _chunks(chunks: list[dict]) -> AsyncIterator[bytes]:
    for c in chunks:
        yield sse(c)
    yield sse("[DONE]")


@_endpoint
async def chat_completions(request: Request, opts: GatewayOptions, client: AsyncCanaryClient):
    body = await read_body(request.receive, request.headers, opts.max_upload_bytes)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad_request(f"the request body is not valid JSON: {e}") from None
    req = chat.parse_chat(data)
    check_model(data.get("model"), opts)
    answer = await until_disconnect(
        request.receive,
        client.ask_result(req.instruction, req.transcript, req.max_new_tokens, req.temperature, req.top_p, req.seed),
    )
    cid = chat.completion_id()
    if req.stream:
        return EventStream(_chunks(chat.stream_chunks(cid, data["model"], answer.text, answer.finish_reason)))
    return JSONResponse(chat.completion(cid, data["model"], answer.text, answer.finish_reason))


# -- models and health -------------------------------------------------------------------------
def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "canary-triton"}


@_endpoint
async def list_models(request: Request, opts: GatewayOptions, client: AsyncCanaryClient):
    return JSONResponse({"object": "list", "data": [_model_card(n) for n in opts.model_names]})


@_endpoint
async def get_model(request: Request, opts: GatewayOptions, client: AsyncCanaryClient):
    name = request.path_params["model"]
    check_model(name, opts)
    return JSONResponse(_model_card(name))


@_endpoint
async def health(request: Request, opts: GatewayOptions, client: AsyncCanaryClient):
    if await client.is_ready(ENTRY_MODELS):
        return JSONResponse({"status": "ok", "in_flight": request.app.state.load.in_flight})
    raise GatewayError(
        503,
        f"Triton at {opts.triton_url} or one of its models ({', '.join(ENTRY_MODELS)}) is not ready",
        SERVER_ERROR,
        code="service_unavailable",
        headers={"Retry-After": str(opts.retry_after_s)},
    )


async def live(request: Request):
    return JSONResponse({"status": "ok"})


async def not_found(request: Request, exc: HTTPException):
    status = exc.status_code
    what = (
        "no such endpoint"
        if status == 404
        else f"{request.method} is not allowed here"
        if status == 405
        else str(exc.detail)
    )
    return GatewayError(status, f"{what}: {request.method} {request.url.path}").response()


def create_app(opts: GatewayOptions, client_options: ClientOptions | None = None) -> Starlette:
    """The app for ``opts``; its lifespan opens one AsyncCanaryClient to ``opts.triton_url``."""
    copts = client_options or ClientOptions(url=opts.triton_url, timeout_s=opts.timeout_s, retries=opts.retries)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        app.state.options = opts
        app.state.client = AsyncCanaryClient(options=copts)
        try:
            yield
        finally:
            await app.state.client.close()

    routes = [
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
    ]
    load = Load()
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(Gate, opts=opts, load=load)],
        exception_handlers={HTTPException: not_found},
    )
    app.state.load = load
    return app
