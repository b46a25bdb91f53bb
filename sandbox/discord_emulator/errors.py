"""Discord's error shapes and a JSON response with Discord's exact Content-Type."""

from __future__ import annotations

from typing import Any, Optional

from aiohttp import web

from .jsoncodec import dumps_bytes

JSON_CONTENT_TYPE = "application/json"

# Discord JSON error codes used by the emulator
UNKNOWN_ACCOUNT = 10001
UNKNOWN_APPLICATION = 10002
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_ROLE = 10011
UNKNOWN_WEBHOOK = 10015
UNKNOWN_USER = 10013
UNKNOWN_SKU = 10027
UNKNOWN_ENTITLEMENT = 10029
UNKNOWN_INTERACTION = 10062
UNKNOWN_COMMAND = 10063
UNAUTHORIZED = 40001
REQUEST_TOO_LARGE = 40005
ONLY_CONSUMABLE_SKUS = 40018
ONLY_SANDBOX_ENTITLEMENTS_DELETABLE = 40019
INTERACTION_ALREADY_ACKNOWLEDGED = 40060
MAX_FOLLOWUPS_REACHED = 40094
MISSING_ACCESS = 50001
CANNOT_EXECUTE_ON_DM = 50003
CANNOT_EDIT_OTHER_USER_MESSAGE = 50005
EMPTY_MESSAGE = 50006
CANNOT_SEND_NON_TEXT = 50008
MISSING_PERMISSIONS = 50013
INVALID_WEBHOOK_TOKEN = 50027
INVALID_FORM_BODY = 50035
VOICE_ADDITIONAL_CONTENT = 50159
VOICE_SINGLE_AUDIO_ATTACHMENT = 50160
VOICE_NEEDS_METADATA = 50161
VOICE_CANNOT_EDIT = 50162
VOICE_NOT_ALLOWED_IN_CHANNEL = 50173
THREAD_ALREADY_CREATED = 160004


def json_response(data: Any, status: int = 200, headers: Optional[dict[str, str]] = None) -> web.Response:
    """JSON response whose Content-Type is exactly ``application/json`` (discord.py compares it verbatim)."""
    resp = web.Response(body=dumps_bytes(data), status=status, headers=headers)
    resp.headers["Content-Type"] = JSON_CONTENT_TYPE
    return resp


class APIError(Exception):
    """Raised by handlers; turned into Discord's error JSON by the middleware."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def not_found(code: int, what: str) -> APIError:
    return APIError(404, code, f"Unknown {what}")


def invalid_form(errors: dict[str, Any]) -> APIError:
    return APIError(400, INVALID_FORM_BODY, "Invalid Form Body", errors)


def field_error(path: list[Any], code: str, message: str) -> dict[str, Any]:
    """Build Discord's nested error tree: {"embeds": {"0": {"title": {"_errors": [...]}}}}."""
    node: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        node = {str(key): node}
    return node


def merge_errors(into: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    for key, value in tree.items():
        if key == "_errors":
            into.setdefault("_errors", []).extend(value)
        else:
            merge_errors(into.setdefault(key, {}), value)
    return into
