"""The gateway's settings: one frozen dataclass, read once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from canary_triton.client.options import DEFAULT_GRPC_URL

#: Environment variable holding the API key clients must send as ``Authorization: Bearer KEY``.
API_KEY_ENV = "CANARY_TRITON_API_KEY"
#: The id ``GET /v1/models`` lists and requests name (``model``).
DEFAULT_MODEL_NAME = "canary-qwen-2.5b"
#: OpenAI's own limit for an audio upload.
DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class GatewayOptions:
    triton_url: str = DEFAULT_GRPC_URL  # Triton's gRPC endpoint (one channel per gateway process)
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = field(default=None, repr=False)  # None: no authentication
    model_name: str = DEFAULT_MODEL_NAME
    model_aliases: tuple[str, ...] = ()  # more names accepted in `model` (e.g. "whisper-1" for unchanged apps)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # whole request body; over it: 400
    max_in_flight: int = 64  # requests being received or answered; past it: 429 with Retry-After
    retry_after_s: int = 1  # Retry-After on 429 and 503
    timeout_s: float = 300.0  # per Triton request (gRPC deadline: cancelled on the server when it passes)
    retries: int = 2  # extra attempts on Triton's UNAVAILABLE before answering 503

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        for name in ("max_upload_bytes", "max_in_flight", "retry_after_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError(f"the API key (${API_KEY_ENV}) is set but empty")
        if not self.model_name:
            raise ValueError("model_name must not be empty")

    @property
    def model_names(self) -> tuple[str, ...]:
        return (self.model_name, *self.model_aliases)


def api_key_from_env(environ: dict | None = None) -> str | None:
    """The key from ``$CANARY_TRITON_API_KEY`` (unset or empty: None, authentication off)."""
    value = (os.environ if environ is None else environ).get(API_KEY_ENV, "")
    return value or None
