"""``/v1/chat/completions`` over LLM mode (``canary_qwen_llm``): OpenAI's request -> ``ask``.

The served LLM mode takes one user turn (NeMo's ``qwen`` prompt has no system turn), so a
message list maps onto ``AsyncCanaryClient.ask(instruction, transcript)`` like this:

    [user U]                       -> ask(U)
    [system S, user U]             -> ask(S, transcript=U)    text "S\\n\\nU" (contract.llm_mode_text)
    several system / user messages -> their texts joined by a blank line, system first

``developer`` is OpenAI's newer name for ``system``. Assistant, tool and function messages (a
conversation history) and non-text content parts are refused with 400: the model would not see
them as turns. ``canary_qwen_llm`` is unary: ``stream=true`` sends the whole answer as one chunk.
``finish_reason`` is the server's (``AsyncCanaryClient.ask_result``): ``length`` when ``max_tokens``
(or ``max_completion_tokens``) cut the answer, ``stop`` otherwise.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from canary_triton.gateway.openai_errors import bad_request

SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True)
class ChatRequest:
    instruction: str
    transcript: str | None
    max_new_tokens: int | None
    temperature: float | None
    top_p: float | None
    seed: int | None
    stream: bool


def _text(content, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text" or not isinstance(part.get("text"), str):
                raise bad_request(
                    f"messages[{i}]: content part of type {kind!r} is not supported; the served "
                    "LLM mode takes text only",
                    f"messages[{i}].content",
                    "unsupported_content",
                )
            parts.append(part["text"])
        return "".join(parts)
    raise bad_request(f"messages[{i}].content must be a string or a list of text parts", f"messages[{i}].content")


def _number(body: dict, name: str, kind: type, low: float | None = None):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise bad_request(f"'{name}' must be {'an integer' if kind is int else 'a number'}, got {value!r}", name)
    if low is not None and value < low:
        raise bad_request(f"'{name}' is {value}; it must be >= {low}", name)
    return kind(value)


def parse_chat(body) -> ChatRequest:
    """Validate an OpenAI chat request and map it (see the module docstring). Value ranges
    (max_new_tokens, temperature, top_p) are the server's to check: its message comes back."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list", "messages")
    system, user = [], []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role in SYSTEM_ROLES:
            system.append(_text(m.get("content"), i))
        elif role == "user":
            user.append(_text(m.get("content"), i))
        else:
            raise bad_request(
                f"messages[{i}] has role {role!r}: only system/developer and user messages are "
                "supported (the served LLM mode takes one user turn, no conversation history)",
                f"messages[{i}].role",
                "unsupported_role",
            )
    if not user:
        raise bad_request("'messages' needs at least one user message", "messages")
    n = _number(body, "n", int)
    if n not in (None, 1):
        raise bad_request(f"'n' is {n}; this server returns one choice (n=1)", "n")
    for name in ("tools", "functions", "logprobs", "stop"):
        if body.get(name):
            raise bad_request(f"'{name}' is not supported by the served LLM mode", name, "unsupported_parameter")
    max_tokens = _number(body, "max_completion_tokens", int)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", int)
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise bad_request(f"'stream' must be true or false, got {stream!r}", "stream")
    user_text = "\n\n".join(user)
    return ChatRequest(
        instruction="\n\n".join(system) if system else user_text,
        transcript=user_text if system else None,
        max_new_tokens=max_tokens,
        temperature=_number(body, "temperature", float),
        top_p=_number(body, "top_p", float),
        seed=_number(body, "seed", int, 0),
        stream=stream,
    )


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def completion(cid: str, model: str, answer: str, finish_reason: str = "stop") -> dict:
    """A ``chat.completion``. The server reports no token counts: ``usage`` is left out."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": str(finish_reason),
                "logprobs": None,
            }
        ],
    }


def chunk(cid: str, model: str, created: int, delta: dict, finish_reason: str | None) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def stream_chunks(cid: str, model: str, answer: str, finish_reason: str = "stop") -> list[dict]:
    """The whole answer as chunks: the role, the content (one chunk: the LLM mode is unary), the
    finish reason."""
    created = int(time.time())
    return [
        chunk(cid, model, created, {"role": "assistant", "content": ""}, None),
        chunk(cid, model, created, {"content": answer}, None),
        chunk(cid, model, created, {}, str(finish_reason)),
    ]
