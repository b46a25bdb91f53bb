"""One error hierarchy for every gateway, and the mapping from HTTP answers to it.

Every documented error shape is accepted (``{"error": {"message", "type", "code", "param"}}`` with
``code`` a number, a string or null; ``{"error": "text"}``; ``{"detail": ...}``; ``{"message": ...}``)
as well as non-JSON bodies such as a proxy's HTML 502 page. Messages are scrubbed of secrets.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .meta import CallMeta

__all__ = [
    "GatewayError",
    "AuthenticationError",
    "PermissionDenied",
    "RateLimited",
    "ModelNotFound",
    "ContextTooLong",
    "InvalidRequest",
    "UpstreamUnavailable",
    "GatewayTimeout",
    "StreamInterrupted",
    "QuotaExceeded",
    "InsufficientCredits",
    "Unsupported",
    "InvalidResponse",
    "ResultDownloadFailed",
    "redact",
    "context_numbers",
    "error_from_response",
    "error_from_payload",
    "parse_retry_after",
]

_MAX_MESSAGE = 300

# Generic secret shapes scrubbed even when the exact key is unknown to the caller.
_SECRET_PATTERNS = re.compile(
    r"(?:sk|pk|rk)-[A-Za-z0-9_\-]{12,}"  # sk-… style keys
    r"|(?i:bearer)\s+[A-Za-z0-9_\-\.=]{8,}"  # Authorization header values
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secrets and anything shaped like an API key from ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "***")
    return _SECRET_PATTERNS.sub("***", text)


class GatewayError(Exception):
    """Base of every error raised by the gateway client.

    ``status`` is the HTTP status (None for transport errors), ``code`` the gateway's error code as a
    string (numbers are stringified), ``retry_after`` seconds to wait when the gateway said so.
    """

    default_message = "gateway error"

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        error_type: str | None = None,
        param: str | None = None,
        profile: str | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        message = redact(str(message or self.default_message), secrets)
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 1] + "…"
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = None if code is None else str(code)
        self.request_id = request_id
        self.retry_after = retry_after
        self.error_type = error_type
        self.param = param
        self.profile = profile
        #: True when the request body may have reached the gateway (used by the retry policy).
        self.request_sent = True
        #: True for transport failures (connection refused/reset), not HTTP answers.
        self.connection_error = False
        #: the failed call's metadata (which gateway, status, request id), set where the call was made
        self.meta: CallMeta | None = None

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"(HTTP {self.status}")
            parts[-1] += f", code {self.code})" if self.code else ")"
        elif self.code:
            parts.append(f"(code {self.code})")
        if self.request_id:
            parts.append(f"[request {self.request_id}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r}, retry_after={self.retry_after!r}, "
            f"profile={self.profile!r})"
        )

    def __reduce__(self) -> Any:  # keep pickling working despite keyword-only args
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[GatewayError], state: dict[str, Any]) -> GatewayError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class AuthenticationError(GatewayError):
    default_message = "the gateway rejected the API key"


class PermissionDenied(GatewayError):
    default_message = "the API key may not use this resource"


class RateLimited(GatewayError):
    default_message = "rate limited by the gateway"


class ModelNotFound(GatewayError):
    default_message = "model not found"


class ContextTooLong(GatewayError):
    """The request does not fit the model's context window. ``context_window`` and ``requested_tokens``
    are the numbers the gateway gave, when it gave them (read from the message, or from llama.cpp's
    ``n_ctx``/``n_prompt_tokens`` fields)."""

    default_message = "the input exceeds the model's context window"

    def __init__(
        self, message: str = "", *, context_window: int | None = None, requested_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        found_window, found_requested = context_numbers(self.message)
        self.context_window = context_window if context_window is not None else found_window
        self.requested_tokens = requested_tokens if requested_tokens is not None else found_requested


class InvalidRequest(GatewayError):
    """The request was refused as invalid; ``field`` names the offending field, ``allowed`` its allowed values."""

    default_message = "invalid request"

    def __init__(
        self,
        message: str = "",
        *,
        field: str | None = None,
        allowed: Sequence[Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("param", field)
        super().__init__(message, **kwargs)
        self.field = field if field is not None else self.param
        self.allowed = allowed

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", field={self.field!r}, allowed={self.allowed!r})"


class UpstreamUnavailable(GatewayError):
    default_message = "the gateway or its upstream is unavailable"


class InvalidResponse(UpstreamUnavailable):
    """The gateway answered 2xx with a body that could not be understood (e.g. invalid JSON)."""

    default_message = "the gateway sent an unreadable response"


class ResultDownloadFailed(UpstreamUnavailable):
    """The gateway answered with a result URL (so it made, and charged for, the result), but fetching that
    URL failed. ``host`` is where from; ``status`` the HTTP status, or None with ``reason`` (no answer)."""

    default_message = "the result file could not be downloaded"

    def __init__(self, message: str = "", *, host: str, reason: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.host = host
        self.reason = reason

    def user_message(self) -> str:
        why = f"HTTP {self.status}" if self.status else (self.reason or "no answer")
        return (f"The AI gateway made the image, but downloading it from {self.host} failed ({why}). Try again; "
                "if it keeps happening, whoever runs the bot should check where the gateway stores its results.")


class GatewayTimeout(GatewayError):
    default_message = "the gateway did not answer in time"


class QuotaExceeded(GatewayError):
    default_message = "quota or budget exhausted"


class InsufficientCredits(QuotaExceeded):
    default_message = "not enough credits"


class Unsupported(GatewayError):
    default_message = "not supported by this gateway"


class StreamInterrupted(GatewayError):
    """A stream failed after it started; ``partial_text`` is the visible text received so far.

    ``cause`` is the mapped error when the gateway sent one inside the stream (None when the stream
    simply ended early).
    """

    default_message = "the stream was interrupted"

    def __init__(
        self,
        message: str = "",
        *,
        partial_text: str = "",
        partial_reasoning: str = "",
        cause: GatewayError | None = None,
        **kwargs: Any,
    ) -> None:
        if cause is not None:
            kwargs.setdefault("status", cause.status)
            kwargs.setdefault("code", cause.code)
            kwargs.setdefault("request_id", cause.request_id)
            kwargs.setdefault("retry_after", cause.retry_after)
            kwargs.setdefault("error_type", cause.error_type)
        super().__init__(message, **kwargs)
        self.partial_text = partial_text
        self.partial_reasoning = partial_reasoning
        self.cause = cause

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", partial_chars={len(self.partial_text)}, cause={self.cause!r})"


# --------------------------------------------------------------------------------------------------
# Mapping
# --------------------------------------------------------------------------------------------------

_AUTH = {"invalid_api_key", "authentication_error", "unauthorized", "invalid_key", "missing_api_key",
         "api_key_invalid", "key_revoked", "revoked_api_key", "invalid_authentication", "unauthenticated"}
_PERMISSION = {"permission_denied", "permission_error", "forbidden", "access_denied", "model_not_allowed"}
_CREDITS = {"insufficient_credits", "insufficient_balance", "payment_required", "insufficient_funds",
            "credits_exhausted", "low_balance"}
_QUOTA = {"insufficient_quota", "quota_exceeded", "budget_exceeded", "budget_exhausted", "billing_hard_limit_reached",
          "quota_error", "billing_error", "spend_limit_exceeded", "usage_limit_exceeded"}
_RATE = {"rate_limit_exceeded", "rate_limit_error", "rate_limited", "too_many_requests", "ratelimit"}
_MODEL = {"model_not_found", "unknown_model", "invalid_model", "model_not_available", "no_such_model"}
_CONTEXT = {"context_length_exceeded", "context_too_long", "context_window_exceeded", "max_tokens_exceeded",
            "string_above_max_length", "request_too_large", "tokens_exceeded", "exceed_context_size_error"}
_TIMEOUT = {"timeout", "gateway_timeout", "upstream_timeout", "request_timeout", "timeout_error"}
_UPSTREAM = {"server_error", "api_error", "upstream_error", "service_unavailable", "overloaded_error",
             "overloaded", "bad_gateway", "internal_error", "provider_error", "upstream_unavailable"}
_CONTEXT_WORDS = ("context length", "context window", "maximum context", "too many tokens", "context_length",
                  "context size")
_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+)"
#: where a context-length error says the window: "maximum context length is 2048 tokens" (OpenAI, vLLM,
#: LiteLLM), "context window of 2,048 tokens", "n_ctx": 2048 (llama.cpp), "2065 tokens > 2048 maximum"
#: (Anthropic)
_WINDOW_SAYINGS = (
    re.compile(r"maximum context length (?:is|of) " + _NUMBER, re.I),
    re.compile(r"context (?:window|length|size) (?:is|of) " + _NUMBER, re.I),
    re.compile(r"n_ctx\W{0,4}" + _NUMBER, re.I),
    re.compile(r"tokens? > " + _NUMBER + r" maximum", re.I),
)
_REQUESTED_SAYINGS = (
    re.compile(r"(?:requested|resulted in|you sent) (?:about )?" + _NUMBER + r" tokens", re.I),
    re.compile(r"n_prompt_tokens\W{0,4}" + _NUMBER, re.I),
    re.compile(_NUMBER + r" tokens > \d", re.I),
)


def context_numbers(message: str) -> tuple[int | None, int | None]:
    """(context window, tokens requested) as a context-length error message states them, else None."""
    found: list[int | None] = []
    for sayings in (_WINDOW_SAYINGS, _REQUESTED_SAYINGS):
        match = next((m for m in (s.search(message) for s in sayings) if m), None)
        found.append(int(match.group(1).replace(",", "")) if match else None)
    return found[0], found[1]


def _classify(status: int | None, code: str | None, etype: str | None, message: str) -> type[GatewayError]:
    keys = {k.lower() for k in (code, etype) if k}
    low = message.lower()
    if keys & _CREDITS or status == 402:
        return InsufficientCredits
    if keys & _QUOTA:
        return QuotaExceeded
    if keys & _CONTEXT or any(w in low for w in _CONTEXT_WORDS):
        return ContextTooLong
    if keys & _MODEL:
        return ModelNotFound
    if keys & _AUTH or status == 401:
        return AuthenticationError
    if keys & _PERMISSION or status == 403:
        if "quota" in low or "budget" in low or "credit" in low:
            return QuotaExceeded
        return PermissionDenied
    if keys & _RATE or status == 429:
        if "quota" in low or "budget" in low or "credits" in low:
            return QuotaExceeded
        return RateLimited
    if any("not_supported" in k or "unsupported" in k for k in keys) or status == 501:
        return Unsupported
    if keys & _TIMEOUT or status in (408, 504, 524):
        return GatewayTimeout
    if status == 404:
        return ModelNotFound if "model" in low else Unsupported
    if status == 405:
        return Unsupported
    if status is not None and status >= 500:
        return UpstreamUnavailable
    if keys & _UPSTREAM:
        return UpstreamUnavailable
    if status is not None and 400 <= status < 500:
        return InvalidRequest
    return GatewayError


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_retry_after(headers: Mapping[str, str] | None, body_error: Mapping[str, Any] | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date), ``retry-after-ms`` or a body field."""
    if headers:
        ms = headers.get("retry-after-ms")
        if ms is not None and (v := _num(ms)) is not None:
            return max(0.0, v / 1000.0)
        ra = headers.get("retry-after")
        if ra is not None:
            v = _num(ra)
            if v is not None:
                return max(0.0, v)
            try:
                when = parsedate_to_datetime(ra)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    if body_error:
        for key in ("retry_after", "retry_after_seconds", "retryAfter"):
            if (v := _num(body_error.get(key))) is not None:
                return max(0.0, v)
    return None


_TAG = re.compile(r"<[^>]+>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_WS = re.compile(r"\s+")


def _text_of_page(text: str) -> str:
    """A short readable summary of a non-JSON error body (HTML title or stripped text)."""
    m = _TITLE.search(text)
    if m:
        text = m.group(1)
    else:
        text = re.sub(r"(?is)<(script|style)[^>]*>.*?</\1>", " ", text)
        text = _TAG.sub(" ", text)
    return _WS.sub(" ", text).strip()[:160]


def _extract(payload: Any) -> tuple[str, str | None, str | None, str | None, dict[str, Any] | None]:
    """(message, code, type, param, error-object) from any documented error payload."""
    if isinstance(payload, dict):
        err = payload.get("error", payload if ("message" in payload or "detail" in payload) else None)
        if isinstance(err, str):
            code = payload.get("code")
            return err, (None if code is None else str(code)), payload.get("type"), None, payload
        if isinstance(err, dict):
            message = err.get("message") or err.get("msg") or err.get("detail") or err.get("error") or ""
            if isinstance(message, (list, dict)):
                message = json.dumps(message)[:200]
            detail = err.get("detail")
            if not message and isinstance(detail, list) and detail and isinstance(detail[0], dict):
                message = str(detail[0].get("msg", ""))
            code = err.get("code")
            etype = err.get("type") or err.get("error_type")
            param = err.get("param")
            if isinstance(param, list):  # FastAPI style loc
                param = ".".join(str(p) for p in param)
            return (str(message), None if code is None else str(code),
                    None if etype is None else str(etype), None if param is None else str(param), err)
    if isinstance(payload, str):
        return payload, None, None, None, None
    return "", None, None, None, None


def error_from_payload(
    payload: Any,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
    profile: str | None = None,
    secrets: Iterable[str] = (),
) -> GatewayError:
    """Build the right error from a decoded error payload (HTTP body or an error inside a stream)."""
    message, code, etype, param, err = _extract(payload)
    effective = status
    if (effective is None or effective < 400) and code is not None and code.isdigit() and 400 <= int(code) < 600:
        effective = int(code)  # numeric code in a 200 stream / aicredits-style echo
    cls = _classify(effective, code, etype, message)
    retry_after = parse_retry_after(headers, err)
    if request_id is None and isinstance(payload, dict):
        rid = payload.get("request_id") or (err or {}).get("request_id")
        request_id = None if rid is None else str(rid)
    if not message:
        message = cls.default_message
    kwargs: dict[str, Any] = dict(status=effective, code=code, request_id=request_id, retry_after=retry_after,
                                  error_type=etype, param=param, profile=profile, secrets=secrets)
    if cls is InvalidRequest:
        return InvalidRequest(message, field=param, **kwargs)
    if cls is ContextTooLong and err is not None:  # llama.cpp gives the numbers as fields
        return ContextTooLong(message, context_window=_int_field(err, "n_ctx"),
                              requested_tokens=_int_field(err, "n_prompt_tokens"), **kwargs)
    return cls(message, **kwargs)


def _int_field(err: Mapping[str, Any], key: str) -> int | None:
    value = err.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def error_from_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    request_id: str | None = None,
    profile: str | None = None,
    secrets: Iterable[str] = (),
) -> GatewayError:
    """Map an HTTP error answer (JSON or not) to the hierarchy."""
    text = body.decode("utf-8", "replace") if body else ""
    payload: Any = None
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
    if payload is None:
        summary = _text_of_page(text) if text else ""
        reason = f"HTTP {status} from the gateway"
        message = f"{reason} (non-JSON body: {summary})" if summary else reason
        cls = _classify(status, None, None, "")
        kwargs: dict[str, Any] = dict(status=status, request_id=request_id, profile=profile, secrets=secrets,
                                      retry_after=parse_retry_after(headers))
        if cls is InvalidRequest:
            return InvalidRequest(message, **kwargs)
        return cls(message, **kwargs)
    return error_from_payload(payload, status=status, headers=headers, request_id=request_id,
                              profile=profile, secrets=secrets)
