"""Clients for the served Canary-Qwen pipeline: sync and asyncio, gRPC and HTTP."""

from canary_triton.client.aio import AsyncCanaryClient
from canary_triton.client.api import CanaryClient
from canary_triton.client.audio_input import Audio, as_audio, decode_bytes, decode_file, expand_paths, from_array
from canary_triton.client.calls import Answer, Result
from canary_triton.client.options import ClientOptions, ServerError
from canary_triton.longform.segment import Segment

__all__ = [
    "Answer",
    "AsyncCanaryClient",
    "Audio",
    "CanaryClient",
    "ClientOptions",
    "Result",
    "Segment",
    "ServerError",
    "as_audio",
    "decode_bytes",
    "decode_file",
    "expand_paths",
    "from_array",
]
