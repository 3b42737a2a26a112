"""The client's options and errors: where to connect, deadlines and retries (exponential backoff
with full jitter on UNAVAILABLE), and ``ServerError`` carrying the server's status and message.
Nothing here imports tritonclient."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from canary_triton import contract as C
from canary_triton.errors import CanaryTritonError

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


def resolve_options(options: ClientOptions | None, url: str | None, protocol: str | None) -> ClientOptions:
    """``options`` (default ClientOptions()) with ``url``/``protocol`` put in when given."""
    opts = options or ClientOptions()
    override = {k: v for k, v in (("url", url), ("protocol", protocol)) if v}
    return ClientOptions(**{**opts.__dict__, **override}) if override else opts
