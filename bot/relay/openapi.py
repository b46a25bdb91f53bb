"""The OpenAPI 3.1 document of the bot's web server (relay, health, readiness, metrics).

Schemas are JSON Schema 2020-12, so ``validate_response`` (used by the tests) checks a real answer
against the document with ``jsonschema``.
"""

from __future__ import annotations

from typing import Any

from bot.relay import validation as V
from bot.rendering import limits as L

_NULLABLE_STR = ["string", "null"]


def _str(max_len: int | None = None, *, nullable: bool = True, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _NULLABLE_STR if nullable else "string", **extra}
    if max_len is not None:
        schema["maxLength"] = max_len
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


# -- patterns derived from the validator's constants ------------------------------------------------
# Patterns are written for both ECMA-262 (OpenAPI clients) and Python's re (jsonschema, the tests):
# no inline flags, so a case-insensitive word is spelled [dD][iI]…


def _anycase(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def decimal_at_most(limit: int) -> str:
    """A regex (no anchors) of the decimal numbers 1..``limit`` written without leading zeros."""
    digits = str(limit)
    parts = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []  # fewer digits than limit
    for i, d in enumerate(digits):  # as many digits: same prefix, then a smaller digit, then anything
        low = 1 if i == 0 else 0
        if int(d) > low:
            rest = len(digits) - i - 1
            parts.append(f"{digits[:i]}[{low}-{int(d) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    parts.append(digits)
    return "(" + "|".join(parts) + ")"


_HOST = "[A-Za-z0-9._~%!$&'()*+,;=:@-]+"  # ASCII only: Python's URL parser refuses some non-ASCII hosts
_REST = "([/?#][^\\s]*)?"


def _url_pattern(schemes: tuple[str, ...]) -> str:
    """``"" `` or an absolute URL with one of ``schemes`` (``discord:`` needs no host), no whitespace."""
    forms = [f"{_anycase(s)}:[^\\s]*" if s == "discord" else f"{_anycase(s)}://{_HOST}{_REST}" for s in schemes]
    return "^$|^(" + "|".join(forms) + ")$"


def _url(max_len: int = V.URL_MAX, schemes: tuple[str, ...] = V.URL_SCHEMES, **extra: Any) -> dict[str, Any]:
    return _str(max_len, pattern=_url_pattern(schemes), **extra)


_BLANK = {"enum": [None, ""]}  # absent, as the validator counts it (empty string or null)
_NOT_BLANK = "[^\\s]"  # somewhere a character that is not whitespace
_FORBIDDEN_NAME = "|".join(
    [f"[\\s\\S]*{_anycase(p)}" for p in V.FORBIDDEN_USERNAME_PARTS]
    + [f"\\s*{_anycase(n)}\\s*$" for n in V.FORBIDDEN_USERNAMES]
)
TIMESTAMP_PATTERN = (
    "^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    "(\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
COLOR_PATTERN = f"^$|^(#|0[xX])?[0-9a-fA-F]{{1,{len(f'{V.COLOR_MAX:x}')}}}$"

SNOWFLAKE = {
    "anyOf": [
        {"type": "string", "pattern": f"^{decimal_at_most(V.SNOWFLAKE_MAX)}$"},
        {"type": "integer", "minimum": 1, "maximum": V.SNOWFLAKE_MAX},
    ],
}
_OPTIONAL_SNOWFLAKE = {"anyOf": [SNOWFLAKE, _BLANK]}


def _required_text(*names: str, max_len: dict[str, int]) -> dict[str, Any]:
    """Every name present, a string of at most its length with a character that is not whitespace."""
    return {
        "required": list(names),
        "properties": {n: {"type": "string", "pattern": _NOT_BLANK, "maxLength": max_len[n]} for n in names},
    }


def _present(name: str) -> dict[str, Any]:
    """``name`` is given and not absent (not null, not an empty string)."""
    return {"required": [name], "properties": {name: {"not": _BLANK}}}


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying", "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}

SCHEMAS: dict[str, Any] = {
    "Snowflake": SNOWFLAKE,
    "EmbedField": {
        "type": "object",
        "description": "A field with an empty name and value is dropped; otherwise both are required.",
        "properties": {
            "name": _str(L.EMBED_FIELD_NAME), "value": _str(L.EMBED_FIELD_VALUE),
            "inline": {"type": ["boolean", "null"]},
        },
        "anyOf": [
            {"properties": {"name": _BLANK, "value": _BLANK}},
            _required_text("name", "value", max_len={"name": L.EMBED_FIELD_NAME, "value": L.EMBED_FIELD_VALUE}),
        ],
    },
    "Embed": {
        "type": "object",
        "description": (
            "Empty strings and nulls count as absent; a field with an empty name and value is dropped. An embed needs "
            f"something to show, and the texts of all embeds together are at most {L.EMBED_TOTAL} characters."
        ),
        "properties": {
            "type": {"enum": [None, "", "rich"]},
            "title": _str(L.EMBED_TITLE),
            "description": _str(L.EMBED_DESCRIPTION),
            "url": _url(),
            "color": {
                "anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": V.COLOR_MAX},
                    {"type": ["string", "null"], "pattern": COLOR_PATTERN},
                ],
                "description": f"0–{V.COLOR_MAX} or a hex colour like \"#5865F2\"",
            },
            "timestamp": _str(
                None, pattern=f"^$|{TIMESTAMP_PATTERN}", description="ISO 8601, e.g. 2024-05-01T12:00:00Z"
            ),
            "footer": {
                "type": ["object", "null"],
                "properties": {"text": _str(L.EMBED_FOOTER), "icon_url": _url()},
                "if": _present("icon_url"),
                "then": _required_text("text", max_len={"text": L.EMBED_FOOTER}),
            },
            "image": {"type": ["object", "null"], "properties": {"url": _url()}},
            "thumbnail": {"type": ["object", "null"], "properties": {"url": _url()}},
            "author": {
                "type": ["object", "null"],
                "properties": {"name": _str(L.EMBED_AUTHOR), "url": _url(), "icon_url": _url()},
                "if": {"anyOf": [_present("url"), _present("icon_url")]},
                "then": _required_text("name", max_len={"name": L.EMBED_AUTHOR}),
            },
            "fields": {"type": ["array", "null"], "maxItems": L.EMBED_FIELDS, "items": _ref("EmbedField")},
        },
    },
    "Emoji": {
        "type": ["object", "null"],
        "properties": {
            "id": _OPTIONAL_SNOWFLAKE, "name": _str(V.EMOJI_NAME_MAX), "animated": {"type": ["boolean", "null"]},
        },
        "anyOf": [{"type": "null"}, _present("id"), _required_text("name", max_len={"name": V.EMOJI_NAME_MAX})],
    },
    "LinkButton": {
        "type": "object",
        "required": ["type", "style", "url"],
        "description": "A label or an emoji is required",
        "properties": {
            "type": {"const": 2},
            "style": {
                "const": V.LINK_BUTTON_STYLE, "description": "Only link buttons: interactive components are refused",
            },
            "url": {**_url(V.BUTTON_URL_MAX, V.BUTTON_URL_SCHEMES), "type": "string", "minLength": 1},
            "label": _str(L.BUTTON_LABEL),
            "emoji": _ref("Emoji"),
            "disabled": {"type": ["boolean", "null"]},
            "custom_id": {**_BLANK, "description": "Link buttons have a url, not a custom_id"},
            "sku_id": {**_BLANK, "description": "Premium buttons are refused"},
        },
        "anyOf": [
            {"required": ["label"], "properties": {"label": {"type": "string", "minLength": 1}}},
            {"required": ["emoji"], "properties": {"emoji": {"type": "object"}}},
        ],
    },
    "ActionRow": {
        "type": "object",
        "required": ["type", "components"],
        "properties": {
            "type": {"const": 1},
            "components": {"type": "array", "minItems": 1, "maxItems": L.BUTTONS_PER_ROW, "items": _ref("LinkButton")},
        },
    },
    "AllowedMentions": {
        "type": ["object", "null"],
        "description": (
            "Honoured only when the key was created with allow_mentions; otherwise nothing pings. users (roles) "
            "cannot be listed while parse contains \"users\" (\"roles\")."
        ),
        "properties": {
            "parse": {
                "type": ["array", "null"], "maxItems": len(V.MENTION_KINDS), "items": {"enum": list(V.MENTION_KINDS)},
            },
            "users": {"type": ["array", "null"], "maxItems": V.MENTION_IDS_MAX, "items": SNOWFLAKE},
            "roles": {"type": ["array", "null"], "maxItems": V.MENTION_IDS_MAX, "items": SNOWFLAKE},
            "replied_user": {"type": ["boolean", "null"]},
        },
        "allOf": [
            {
                "if": {"required": ["parse"], "properties": {"parse": {"type": "array", "contains": {"const": kind}}}},
                "then": {"properties": {kind: {"type": ["array", "null"], "maxItems": 0}}},
            }
            for kind in ("users", "roles")
        ],
    },
    "SendDataRequest": {
        "type": "object",
        "description": (
            "DigiCord's /send-data payload, also accepting the message fields of Discohook's JSON. channelId "
            "(or channel_id) is required; the message needs content, an embed or a link button. The post appears "
            "under its key's name and avatar, through a webhook the bot owns in that channel. Text must be valid "
            "Unicode (a lone UTF-16 surrogate such as \"\\ud800\" is refused). Unknown fields are ignored "
            "and listed in `warnings`."
        ),
        "properties": {
            "channelId": _OPTIONAL_SNOWFLAKE,
            "channel_id": _OPTIONAL_SNOWFLAKE,
            "content": _str(L.MESSAGE_CONTENT),
            "embeds": {"type": ["array", "null"], "maxItems": L.EMBEDS_PER_MESSAGE, "items": _ref("Embed")},
            "components": {"type": ["array", "null"], "maxItems": L.ACTION_ROWS, "items": _ref("ActionRow")},
            "allowed_mentions": _ref("AllowedMentions"),
            "username": {
                **_str(L.USERNAME),
                "not": {"type": "string", "pattern": f"^({_FORBIDDEN_NAME})"},
                "description": (
                    "Only with a key created with custom_identity:true (else 400, rule identity:fixed); "
                    "must not contain \"discord\" or \"clyde\" or be \"everyone\"/\"here\". Default: the key's name"),
            },
            "avatar_url": {**_url(), "description": (
                "Only with a key created with custom_identity:true (else 400). Default: the key's avatar")},
            "tts": {"type": ["boolean", "null"]},
            "flags": {
                "enum": [None, *sorted({0, V.FLAG_SUPPRESS_EMBEDS, V.FLAG_SUPPRESS_NOTIFICATIONS, V.ALLOWED_FLAGS})],
                "description": "Only SUPPRESS_EMBEDS (4) and SUPPRESS_NOTIFICATIONS (4096)",
            },
            "attachments": {"type": ["array", "null"], "maxItems": 0},
            **{name: {**_BLANK, "description": reason} for name, reason in V.UNSUPPORTED_FIELDS.items()},
        },
        "allOf": [
            {"anyOf": [_present("channelId"), _present("channel_id")]},
            {"anyOf": [  # something to post
                _required_text("content", max_len={"content": L.MESSAGE_CONTENT}),
                {"required": ["embeds"], "properties": {"embeds": {"type": "array", "minItems": 1}}},
                {"required": ["components"], "properties": {"components": {"type": "array", "minItems": 1}}},
            ]},
        ],
    },
    "Queued": {
        "type": "object",
        "required": ["id", "status"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": "^rp_[a-z2-7]{20,21}$"},
            "status": {"const": "queued"},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
    "PostError": {
        "type": "object",
        "required": ["code", "message"],
        "additionalProperties": False,
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    },
    "PostStatus": {
        "type": "object",
        "required": ["id", "status", "channel_id", "attempts", "created_at", "message_id"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": "^rp_[a-z2-7]{20,21}$"},
            "status": {"enum": ["queued", "sending", "delivered", "failed"]},
            "channel_id": {"type": "string", "pattern": "^[0-9]+$"},
            "message_id": {"type": ["string", "null"], "pattern": "^[0-9]+$"},
            "attempts": {"type": "integer", "minimum": 0},
            "created_at": {"type": "string", "format": "date-time"},
            "delivered_at": {"type": "string", "format": "date-time"},
            "next_attempt_at": {"type": "string", "format": "date-time"},
            "error": _ref("PostError"),
            "last_error": _ref("PostError"),
            "note": {"type": "string"},
        },
    },
    "Issue": {
        "type": "object",
        "required": ["path", "rule", "message"],
        "additionalProperties": False,
        "properties": {
            "path": {"type": "string", "description": "JSON path, e.g. $.embeds[0].title"},
            "rule": {"type": "string", "description": "The rule broken, e.g. max_length:256"},
            "message": {"type": "string"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "errors": {"type": "array", "items": _ref("Issue")},
            "retry_after": {"type": "number"},
            "max_bytes": {"type": "integer"},
            "id": {"type": "string"},
            "reason": {"enum": ["retention"], "description": "404 of a post deleted after the retention period"},
            "retention_days": {"type": "number"},
        },
    },
    "ValidationError": {
        "allOf": [_ref("Error"), {"required": ["errors"], "properties": {"error": {"const": "invalid_body"}}}],
    },
    "Health": {
        "type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}},
    },
    "Ready": {
        "type": "object",
        "required": ["ready", "checks"],
        "properties": {
            "ready": {"type": "boolean"},
            "checks": {
                "type": "object",
                "additionalProperties": {
                    "type": "object", "required": ["ok", "detail"],
                    "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
                },
            },
        },
    },
}

_AUTH: list[dict[str, list[str]]] = [{"relayKey": []}]
_ERR = _ref("Error")
_UNAUTHORIZED = "Missing, unknown or revoked key, or (error `key_expired`) a key past its expiry"


def build_document(version: str = "0.1.0") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Gatecord web server",
            "version": version,
            "description": (
                "Relay rich messages into Discord channels (compatible with DigiCord's /send-data), plus health, "
                "readiness, Prometheus metrics and this document. Relay keys are created by server admins with "
                "`/relay key create`."
            ),
        },
        "components": {
            "securitySchemes": {"relayKey": {"type": "http", "scheme": "bearer", "description": "A relay key (gcr_…)"}},
            "schemas": SCHEMAS,
        },
        "paths": {
            "/send-data": {
                "post": {
                    "operationId": "sendData",
                    "summary": "Queue a message for a channel (durably stored before the answer)",
                    "security": _AUTH,
                    "parameters": [
                        {"name": "wait", "in": "query", "required": False,
                         "schema": {"enum": ["true", "false", "1", "0"]},
                         "description": "Wait (up to relay.wait_timeout) for delivery and answer with the message id"},
                        {"name": "Idempotency-Key", "in": "header", "required": False,
                         "schema": {"type": "string", "maxLength": 255},
                         "description": "A repeated post with the same key returns the first answer (same id) for "
                                        "relay.idempotency_hours (default 24); "
                                        "after that the same key makes a new post"},
                    ],
                    "requestBody": {
                        "required": True, "content": {"application/json": {"schema": _ref("SendDataRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("PostStatus"), "wait=true: delivered; message_id is set"),
                        "202": _json({"oneOf": [_ref("Queued"), _ref("PostStatus")]},
                                     "Stored and queued (with wait=true: not delivered yet when the wait ended)"),
                        "400": _json({"anyOf": [_ref("ValidationError"), _ERR]},
                                     "Invalid JSON, or a field breaks a rule (errors[] name the JSON path and rule)"),
                        "401": _json(_ERR, _UNAUTHORIZED),
                        "403": _json(_ERR, "The key may not post to that channel (whether or not it exists)"),
                        "413": _json(_ERR, "Body larger than http.max_body_bytes"),
                        "415": _json(_ERR, "Content-Type is not application/json"),
                        "422": _json(_ERR, "The Idempotency-Key was used before with a different body"),
                        "429": _json(_ERR, "The key is over its rate limit", RETRY_AFTER),
                        "502": _json(_ref("PostStatus"), "wait=true: Discord refused the post for good (see error)"),
                        "503": _json(_ERR, "Not connected to Discord yet, or the database is unavailable", RETRY_AFTER),
                    },
                }
            },
            "/send-data/{id}": {
                "get": {
                    "operationId": "getSendData",
                    "summary": "Delivery status of a post (only with the key that sent it)",
                    "description": (
                        "Delivered and failed posts are kept for relay.retention_days (default 7), then deleted; "
                        "queued and sending posts are kept until they finish. A deleted post answers 404 with "
                        "reason `retention`."
                    ),
                    "security": _AUTH,
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": _json(
                            _ref("PostStatus"), "The post's status and, once delivered, its Discord message id"
                        ),
                        "401": _json(_ERR, _UNAUTHORIZED),
                        "404": _json(_ERR, "No such post for this key, or (reason `retention`, with retention_days) "
                                           "the post is older than the retention period and was deleted"),
                        "503": _json(_ERR, "The database is unavailable", RETRY_AFTER),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness: the process answers",
                    "responses": {"200": _json(_ref("Health"), "Alive")},
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: database open and Discord connected",
                    "responses": {"200": _json(_ref("Ready"), "Ready"), "503": _json(_ref("Ready"), "Not ready")},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format)",
                    "responses": {
                        "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": _json({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI 3.1 document"),
                    },
                }
            },
        },
    }


def response_schema(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON schema of one documented response, resolvable on its own (components attached)."""
    responses = document["paths"][path][method.lower()]["responses"]
    if str(status) not in responses:
        raise KeyError(f"{method.upper()} {path} does not document status {status}")
    content = responses[str(status)].get("content", {})
    if "application/json" not in content:
        raise KeyError(f"{method.upper()} {path} {status} is not JSON")
    return {**content["application/json"]["schema"], "components": document["components"]}


def validate_response(document: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    """Raise ``jsonschema.ValidationError`` when ``body`` does not match the documented response."""
    import jsonschema

    schema = response_schema(document, path, method, status)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)
