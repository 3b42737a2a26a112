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


_TRITON_TYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32", np.dtype(np.uint64): "UINT64",
                 np.dtype(np.object_): "BYTES"}


def infer_one(opts: ClientOptions, model: str, inputs: dict[str, np.ndarray], output: str):
    """One request (each array already has its batch dimension); the server's message on error."""
    from tritonclient.utils import InferenceServerException

    m = _module(opts.protocol)
    client = m.InferenceServerClient(opts.url, network_timeout=opts.timeout_s) if opts.protocol == "http" \
        else m.InferenceServerClient(opts.url)
    tensors = []
    for name, arr in inputs.items():
        tensors.append(m.InferInput(name, list(arr.shape), _TRITON_TYPES[arr.dtype]))
        tensors[-1].set_data_from_numpy(arr)
    try:
        kwargs = {"client_timeout": opts.timeout_s} if opts.protocol == "grpc" else {}
        result = client.infer(model, tensors, outputs=[m.InferRequestedOutput(output)], **kwargs)
    except InferenceServerException as e:
        raise CanaryTritonError(f"server refused the request: {e.message()}") from None
    finally:
        client.close()
    value = result.as_numpy(output).reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else value


def transcribe(audio: np.ndarray, opts: ClientOptions = ClientOptions(), max_new_tokens: int | None = None) -> str:
    """Transcribe one clip (16 kHz mono float32) through the ensemble."""
    inputs = {contract.AUDIO.name: np.asarray(audio, dtype=np.float32).reshape(1, -1)}
    if max_new_tokens is not None:
        inputs[contract.MAX_NEW_TOKENS.name] = np.array([[max_new_tokens]], dtype=np.int32)
    return str(infer_one(opts, opts.model, inputs, contract.TRANSCRIPT.name))


def ask(text: str | bytes, opts: ClientOptions = ClientOptions(), max_new_tokens: int | None = None,
        temperature: float | None = None, top_p: float | None = None, seed: int | None = None) -> str:
    """LLM mode: the base Qwen3 (no LoRA) answers ``text`` (e.g. an instruction plus a transcript)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    inputs = {contract.TEXT_INPUT.name: np.array([[raw]], dtype=np.object_)}
    for spec, value, dtype in ((contract.MAX_NEW_TOKENS, max_new_tokens, np.int32),
                               (contract.TEMPERATURE, temperature, np.float32),
                               (contract.TOP_P, top_p, np.float32), (contract.SEED, seed, np.uint64)):
        if value is not None:
            inputs[spec.name] = np.array([[value]], dtype=dtype)
    return str(infer_one(opts, contract.LLM_MODE_MODEL, inputs, contract.TEXT_OUTPUT.name))
