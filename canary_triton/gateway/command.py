"""``canary-triton gateway``: the command-line face of the gateway."""

from __future__ import annotations

import argparse
from typing import Callable

from canary_triton.client.options import DEFAULT_GRPC_URL
from canary_triton.errors import CanaryTritonError
from canary_triton.gateway.options import (
    API_KEY_ENV,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_MODEL_NAME,
    GatewayOptions,
    api_key_from_env,
)


def _cmd_gateway(args: argparse.Namespace) -> int:
    from canary_triton.gateway.runner import serve  # the web stack (the gateway extra) only when the gateway runs

    try:
        opts = GatewayOptions(
            triton_url=args.triton_url,
            host=args.host,
            port=args.port,
            api_key=api_key_from_env(),
            model_name=args.model_name,
            model_aliases=tuple(args.model_alias or ()),
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_in_flight=args.max_in_flight,
            timeout_s=args.timeout,
            retries=args.retries,
        )
    except ValueError as e:
        raise CanaryTritonError(str(e)) from None
    serve(opts)
    return 0


def register(add: Callable[..., argparse.ArgumentParser], positive_int: Callable[[str], int]) -> None:
    p = add(
        "gateway",
        _cmd_gateway,
        "An OpenAI-compatible HTTP endpoint (/v1/audio/transcriptions, "
        f"/v1/chat/completions, /v1/models, /health) in front of Triton's gRPC. API key: ${API_KEY_ENV}.",
    )
    p.add_argument("--triton-url", default=DEFAULT_GRPC_URL, help="Triton's gRPC endpoint HOST:PORT")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="the id /v1/models lists and requests name")
    p.add_argument(
        "--model-alias",
        action="append",
        help="another accepted model name (repeatable), e.g. whisper-1 for applications that cannot be configured",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
        help="largest request body (an upload over it gets 400)",
    )
    p.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=GatewayOptions.max_in_flight,
        help="requests received or answered at once; past it: 429 with Retry-After",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=GatewayOptions.timeout_s,
        help="seconds per Triton request (cancelled on the server when it passes)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=GatewayOptions.retries,
        help="extra attempts when Triton answers UNAVAILABLE, before a 503",
    )
