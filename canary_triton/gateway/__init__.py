"""An OpenAI-compatible HTTP gateway in front of Triton: ``/v1/audio/transcriptions``,
``/v1/chat/completions``, ``/v1/models``, ``/health``, over the asyncio client's one gRPC channel.

    canary-triton gateway --triton-url 127.0.0.1:8001 --host 127.0.0.1 --port 8080

The web stack (Starlette, uvicorn, python-multipart: the ``gateway`` extra) is imported only when
the app is built, so the rest of the command line works without it.
"""

from canary_triton.gateway.options import API_KEY_ENV, GatewayOptions, api_key_from_env

__all__ = ["API_KEY_ENV", "BackgroundGateway", "GatewayOptions", "api_key_from_env", "create_app", "serve"]


def __getattr__(name: str):
    if name == "create_app":
        from canary_triton.gateway.app import create_app

        return create_app
    if name in ("BackgroundGateway", "serve"):
        from canary_triton.gateway import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
