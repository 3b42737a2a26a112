"""Errors in OpenAI's JSON shape, and how the client's errors map onto HTTP statuses.

Every error answer is ``{"error": {"message", "type", "param", "code"}}`` (what the ``openai``
package parses into ``BadRequestError``, ``AuthenticationError``, ...):

    400 invalid_request_error   bad field, bad or empty upload, upload over the size limit,
                                Triton's INVALID_ARG (with the server's message)
    401 invalid_request_error   missing or wrong API key (code invalid_api_key)
    404 invalid_request_error   unknown model (code model_not_found) or path
    429 rate_limit_error        more requests in flight than --max-in-flight (Retry-After)
    502 server_error            Triton answered with another error
    503 server_error            Triton UNAVAILABLE (queue full, not ready, unreachable; Retry-After)
    504 server_error            no answer from Triton within --timeout
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from canary_triton.client.options import ServerError

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
RATE_LIMIT = "rate_limit_error"


class GatewayError(Exception):
    """An answer the gateway gives instead of a result."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> GatewayError:
    return GatewayError(400, message, INVALID_REQUEST, param, code)


#: How the served models' INVALID_ARG messages start (they name the input: ``input 'audio' is ...``).
INPUT_MESSAGE_MARK = "input '"


def from_server_error(e: ServerError, retry_after_s: int) -> GatewayError:
    """Triton's answer, through the client: INVALID_ARG -> 400 with the server's message,
    UNAVAILABLE -> 503, a deadline -> 504, anything else -> 502. An error on a gRPC stream
    carries a message and no code (Triton's stream responses have none): one that names an input,
    as every bad-input refusal of the served models does, is taken as INVALID_ARG."""
    status = (e.status or "").upper()
    message = str(e)
    if "INVALID_ARG" in status or status == "400" or (not status and INPUT_MESSAGE_MARK in message):
        return GatewayError(400, message, INVALID_REQUEST, None, "invalid_value")
    if e.retryable or "UNAVAILABLE" in status:
        return GatewayError(
            503,
            f"the inference server is unavailable: {message}",
            SERVER_ERROR,
            None,
            "service_unavailable",
            {"Retry-After": str(retry_after_s)},
        )
    if "DEADLINE" in status:
        return GatewayError(504, message, SERVER_ERROR, None, "timeout")
    return GatewayError(502, f"the inference server failed: {message}", SERVER_ERROR, None, "upstream_error")
