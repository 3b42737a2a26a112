"""An OpenAI-compatible HTTP gateway in front of Triton: ``/v1/audio/transcriptions``,
``/v1/chat/completions``, ``/v1/models``, ``/health``, over the asyncio client's one gRPC channel.

    canary-triton gateway --triton-url 127.0.0.1:8001 --host 127.0.0.1 --port 8080
"""

from .app import create_app
from .options import API_KEY_ENV, GatewayOptions, api_key_from_env
from .server import BackgroundGateway, serve

__all__ = ["API_KEY_ENV", "BackgroundGateway", "GatewayOptions", "api_key_from_env", "create_app", "serve"]
