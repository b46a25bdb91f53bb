"""Errors in each gateway's own shape.

Handlers raise :class:`GatewayError` with a *kind*; :func:`error_body` renders it per profile:

======================  ======  ===========================  ==================================
kind                    status  aiproxy ``code``             aicord/aicredits ``type``
======================  ======  ===========================  ==================================
authentication          401     invalid_api_key              authentication_error
invalid_request         400     invalid_request              invalid_request_error
model_not_found         404     model_not_found              not_found_error / model_not_found
context_length          400     context_length_exceeded      context_length_exceeded
unsupported_content     400     (given code)                 invalid_request_error
not_found (route)       404     not_found                    not_found_error
rate_limit              429     rate_limit_exceeded          rate_limit_error
insufficient_credits    402     insufficient_credits         insufficient_quota / insufficient_credits
server                  5xx     server_error                 api_error / server_error
======================  ======  ===========================  ==================================

The OpenAI shape (openai, digicord) is ``{"error": {"message", "type", "param", "code"}}`` with
OpenAI's own types and codes (``invalid_api_key``, ``model_not_found``,
``context_length_exceeded``, ``rate_limit_exceeded``, ``insufficient_credits``).
"""

from __future__ import annotations

from typing import Any

_STATUS = {
    "authentication": 401,
    "invalid_request": 400,
    "model_not_found": 404,
    "context_length": 400,
    "unsupported_content": 400,
    "not_found": 404,
    "rate_limit": 429,
    "insufficient_credits": 402,
    "server": 500,
}


class GatewayError(Exception):
    """An error answer; ``code`` overrides the default per-kind code where a style has codes."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status or _STATUS[kind]
        self.param = param
        self.code = code


_AIPROXY = {
    "authentication": ("authentication_error", "invalid_api_key"),
    "invalid_request": ("invalid_request_error", "invalid_request"),
    "model_not_found": ("invalid_request_error", "model_not_found"),
    "context_length": ("invalid_request_error", "context_length_exceeded"),
    "unsupported_content": ("invalid_request_error", "unsupported_content"),
    "not_found": ("invalid_request_error", "not_found"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "insufficient_credits": ("billing_error", "insufficient_credits"),
    "server": ("api_error", "server_error"),
}
_OPENAI = {
    "authentication": ("invalid_request_error", "invalid_api_key"),
    "invalid_request": ("invalid_request_error", None),
    "model_not_found": ("invalid_request_error", "model_not_found"),
    "context_length": ("invalid_request_error", "context_length_exceeded"),
    "unsupported_content": ("invalid_request_error", None),
    "not_found": ("invalid_request_error", "unknown_url"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "insufficient_credits": ("insufficient_quota", "insufficient_credits"),
    "server": ("server_error", None),
}
_AICORD = {
    "authentication": "authentication_error",
    "invalid_request": "invalid_request_error",
    "model_not_found": "not_found_error",
    "context_length": "context_length_exceeded",
    "unsupported_content": "invalid_request_error",
    "not_found": "not_found_error",
    "rate_limit": "rate_limit_error",
    "insufficient_credits": "insufficient_quota",
    "server": "api_error",
}
_AICREDITS = {
    "authentication": "authentication_error",
    "invalid_request": "invalid_request_error",
    "model_not_found": "model_not_found",
    "context_length": "context_length_exceeded",
    "unsupported_content": "invalid_request_error",
    "not_found": "not_found",
    "rate_limit": "rate_limit_error",
    "insufficient_credits": "insufficient_credits",
    "server": "server_error",
}


def error_inner(style: str, err: GatewayError) -> dict[str, Any]:
    """The object that goes under ``"error"`` for ``style``."""
    if style == "aicord":
        return {"message": err.message, "type": _AICORD[err.kind]}
    if style == "aicredits":
        return {"message": err.message, "type": _AICREDITS[err.kind], "code": err.status}
    if style == "aiproxy":
        etype, code = _AIPROXY[err.kind]
        return {"type": etype, "code": err.code or code, "message": err.message, "param": err.param}
    etype, code = _OPENAI[err.kind]
    return {"message": err.message, "type": etype, "param": err.param, "code": err.code or code}


def error_body(style: str, err: GatewayError) -> dict[str, Any]:
    """The full JSON error body for ``style``."""
    return {"error": error_inner(style, err)}
