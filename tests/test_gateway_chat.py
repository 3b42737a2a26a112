"""canary_triton/gateway/chat.py: OpenAI chat requests mapped onto LLM mode's one user turn, the
refusals (400, naming the field), and the completion and chunk bodies. The served chat
completions are in test_gateway.py."""

from __future__ import annotations

import pytest

from canary_triton.gateway.chat import ChatRequest, completion, completion_id, parse_chat, stream_chunks
from canary_triton.gateway.openai_errors import GatewayError


def user(text):
    return {"role": "user", "content": text}


def test_one_user_message_is_the_instruction():
    assert parse_chat({"messages": [user("hi")]}) == ChatRequest("hi", None, None, None, None, None, False)


def test_system_and_developer_messages_are_the_instruction_the_users_the_transcript():
    r = parse_chat(
        {
            "messages": [
                {"role": "system", "content": "Summarize."},
                user("part one"),
                {"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
                user("part two"),
            ]
        }
    )
    assert (r.instruction, r.transcript) == ("Summarize.\n\nBe brief.", "part one\n\npart two")


def test_the_sampling_and_length_fields_are_passed_on():
    r = parse_chat(
        {
            "messages": [user("x")],
            "max_tokens": 7,
            "temperature": 1,
            "top_p": 0.5,
            "seed": 0,
            "stream": True,
            "n": 1,
            "tools": [],  # empty: not asked for
        }
    )
    assert (r.max_new_tokens, r.temperature, r.top_p, r.seed, r.stream) == (7, 1.0, 0.5, 0, True)
    assert isinstance(r.temperature, float)
    assert parse_chat({"messages": [user("x")], "max_completion_tokens": 3, "max_tokens": 9}).max_new_tokens == 3


@pytest.mark.parametrize(
    "body,param,message",
    [
        ([], None, "the request body must be a JSON object"),
        ({}, "messages", "'messages' must be a non-empty list"),
        ({"messages": []}, "messages", "'messages' must be a non-empty list"),
        ({"messages": [{"role": "system", "content": "s"}]}, "messages", "needs at least one user message"),
        ({"messages": [{"role": "assistant", "content": "a"}, user("u")]}, "messages[0].role", "role 'assistant'"),
        ({"messages": ["hello"]}, "messages[0].role", "has role None"),
        ({"messages": [user(None)]}, "messages[0].content", "must be a string or a list of text parts"),
        (
            {"messages": [user([{"type": "image_url", "image_url": {}}])]},
            "messages[0].content",
            "content part of type 'image_url' is not supported",
        ),
        ({"messages": [user("x")], "n": 2}, "n", "'n' is 2; this server returns one choice"),
        ({"messages": [user("x")], "tools": [{"type": "function"}]}, "tools", "'tools' is not supported"),
        ({"messages": [user("x")], "stop": ["\n"]}, "stop", "'stop' is not supported"),
        ({"messages": [user("x")], "max_tokens": 2.5}, "max_tokens", "'max_tokens' must be an integer, got 2.5"),
        ({"messages": [user("x")], "temperature": "hot"}, "temperature", "must be a number, got 'hot'"),
        ({"messages": [user("x")], "temperature": True}, "temperature", "must be a number, got True"),
        ({"messages": [user("x")], "seed": -1}, "seed", "'seed' is -1; it must be >= 0"),
        ({"messages": [user("x")], "stream": "yes"}, "stream", "'stream' must be true or false, got 'yes'"),
    ],
)
def test_what_llm_mode_cannot_take_is_a_400_naming_the_field(body, param, message):
    with pytest.raises(GatewayError) as e:
        parse_chat(body)
    err = e.value
    assert err.status == 400 and err.param == param and message in err.message
    assert err.body()["error"]["type"] == "invalid_request_error"


def test_a_completion_and_its_stream_chunks():
    cid = completion_id()
    assert cid.startswith("chatcmpl-") and len(cid) == len("chatcmpl-") + 32 and cid != completion_id()
    body = completion(cid, "m", "the answer")
    assert (body["id"], body["object"], body["model"]) == (cid, "chat.completion", "m")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "the answer"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert isinstance(body["created"], int) and "usage" not in body
    chunks = stream_chunks(cid, "m", "the answer")
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "the answer"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["created"] for c in chunks}) == 1


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_the_finish_reason_is_the_servers_in_the_completion_and_the_last_chunk(reason):
    from canary_triton import contract as C

    cid = completion_id()
    body = completion(cid, "m", "cut sh", C.FinishReason(reason))
    assert body["choices"][0]["finish_reason"] == reason and type(body["choices"][0]["finish_reason"]) is str
    chunks = stream_chunks(cid, "m", "cut sh", C.FinishReason(reason))
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, reason]
