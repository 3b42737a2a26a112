"""Clients for the served Canary-Qwen pipeline: sync and asyncio, gRPC and HTTP."""

from canary_triton.client.aio import AsyncCanaryClient
from canary_triton.client.api import CanaryClient, ClientOptions, Result, ServerError
from canary_triton.client.audio_input import Audio, as_audio, decode_bytes, decode_file, expand_paths, from_array

__all__ = [
    "AsyncCanaryClient",
    "Audio",
    "CanaryClient",
    "ClientOptions",
    "Result",
    "ServerError",
    "as_audio",
    "decode_bytes",
    "decode_file",
    "expand_paths",
    "from_array",
]
