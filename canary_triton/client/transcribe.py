"""One-call helpers over ``CanaryClient`` (a new connection per call: scripts and tests).

Services should hold one ``CanaryClient`` (or ``AsyncCanaryClient``) and reuse it.
"""

from __future__ import annotations

import numpy as np

from canary_triton import contract as C
from canary_triton.client.api import CanaryClient
from canary_triton.client.calls import llm_request
from canary_triton.client.options import ClientOptions

__all__ = ["ClientOptions", "infer_one", "transcribe", "ask"]


def infer_one(opts: ClientOptions, model: str, inputs: dict[str, np.ndarray], output: str) -> str:
    """One request (each array already has its batch dimension); ServerError carries the server's message."""
    with CanaryClient(options=opts, concurrency=1) as c:
        return c.infer(model, inputs, output)


def transcribe(
    audio,
    opts: ClientOptions = ClientOptions(),
    max_new_tokens: int | None = None,
    sample_rate: int | None = None,
    long_form: bool | None = None,
) -> str:
    """Transcribe one clip: a path, encoded bytes, (array, rate) or a 16 kHz array (over 40 s:
    the long-form entry point, unless ``long_form=False``)."""
    with CanaryClient(options=opts, concurrency=1) as c:
        return c.transcribe(audio, sample_rate=sample_rate, max_new_tokens=max_new_tokens, long_form=long_form)


def ask(
    text: str | bytes,
    opts: ClientOptions = ClientOptions(),
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> str:
    """LLM mode with ``text`` sent as it is (bytes are not re-encoded: the server checks UTF-8)."""
    inputs = llm_request("", max_new_tokens, temperature, top_p, seed)
    inputs[C.TEXT_INPUT.name] = np.array(
        [[text if isinstance(text, bytes) else text.encode("utf-8")]], dtype=np.object_
    )
    return infer_one(opts, C.LLM_MODE_MODEL, inputs, C.TEXT_OUTPUT.name)
