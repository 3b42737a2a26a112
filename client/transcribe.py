"""Send audio to the served ensemble with ``tritonclient`` (gRPC or HTTP) and get the transcript.

The first piece of the client library; long-form, streaming, retries and file formats build on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import contract
from ..errors import CanaryTritonError


@dataclass(frozen=True)
class ClientOptions:
    url: str = "127.0.0.1:8001"
    protocol: str = "grpc"  # grpc | http
    model: str = contract.ENSEMBLE_MODEL
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be grpc or http, got {self.protocol!r}")


def _module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as m
    else:
        import tritonclient.http as m
    return m


def transcribe(audio: np.ndarray, opts: ClientOptions = ClientOptions(), max_new_tokens: int | None = None) -> str:
    """Transcribe one clip (16 kHz mono float32) through the ensemble; server errors keep their message."""
    from tritonclient.utils import InferenceServerException

    m = _module(opts.protocol)
    client = m.InferenceServerClient(opts.url, network_timeout=opts.timeout_s) if opts.protocol == "http" \
        else m.InferenceServerClient(opts.url)
    x = np.asarray(audio, dtype=np.float32).reshape(1, -1)
    inputs = [m.InferInput(contract.AUDIO.name, list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    if max_new_tokens is not None:
        n = np.array([[max_new_tokens]], dtype=np.int32)
        inputs.append(m.InferInput(contract.MAX_NEW_TOKENS.name, [1, 1], "INT32"))
        inputs[-1].set_data_from_numpy(n)
    outputs = [m.InferRequestedOutput(contract.TRANSCRIPT.name)]
    try:
        kwargs = {"client_timeout": opts.timeout_s} if opts.protocol == "grpc" else {}
        result = client.infer(opts.model, inputs, outputs=outputs, **kwargs)
    except InferenceServerException as e:
        raise CanaryTritonError(f"server refused the request: {e.message()}") from None
    finally:
        client.close()
    value = result.as_numpy(contract.TRANSCRIPT.name).reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
