"""canary_triton/gateway/openai_errors.py: OpenAI's error body, and the client's ServerError mapped onto
HTTP statuses (INVALID_ARG 400, UNAVAILABLE 503 with Retry-After, deadline 504, else 502)."""

from __future__ import annotations

import json

import pytest

from canary_triton.client.options import ServerError
from canary_triton.gateway.openai_errors import GatewayError, bad_request, from_server_error


def test_a_bad_request_is_a_400_in_openais_shape():
    e = bad_request("'n' is 2", "n")
    assert e.status == 400 and str(e) == "'n' is 2"
    assert e.body() == {
        "error": {"message": "'n' is 2", "type": "invalid_request_error", "param": "n", "code": "invalid_value"}
    }
    r = e.response()
    assert r.status_code == 400 and json.loads(r.body) == e.body()
    assert bad_request("x", code=None).body()["error"]["code"] is None


def test_headers_go_on_the_response():
    e = GatewayError(429, "busy", "rate_limit_error", None, "rate_limited", {"Retry-After": "2"})
    r = e.response()
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert json.loads(r.body)["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    "error,status,code,message",
    [
        (ServerError("input 'audio' is 41.0 s", "INVALID_ARGUMENT"), 400, "invalid_value", "input 'audio' is 41.0 s"),
        (ServerError("bad", "400"), 400, "invalid_value", "bad"),
        (
            ServerError("input 'audio' holds NaN"),
            400,
            "invalid_value",
            "input 'audio' holds NaN",
        ),  # a stream's: no code
        (
            ServerError("queue full", "UNAVAILABLE"),
            503,
            "service_unavailable",
            "the inference server is unavailable: queue full",
        ),
        (ServerError("not ready", "", retryable=True), 503, "service_unavailable", "unavailable: not ready"),
        (ServerError("too slow", "DEADLINE_EXCEEDED"), 504, "timeout", "too slow"),
        (ServerError("stub died", "INTERNAL"), 502, "upstream_error", "the inference server failed: stub died"),
        (ServerError("something without a code"), 502, "upstream_error", "failed: something without a code"),
    ],
)
def test_server_errors_map_onto_http_statuses(error, status, code, message):
    e = from_server_error(error, retry_after_s=3)
    assert (e.status, e.code) == (status, code) and message in e.message
    assert e.type == ("invalid_request_error" if status == 400 else "server_error")
    assert e.headers == ({"Retry-After": "3"} if status == 503 else {})
