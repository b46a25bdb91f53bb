"""Validate what the bot sends the way Discord does: JSON schema (from Discord's OpenAPI spec)
plus the limits the spec does not carry (2000-character content for bots, 6000 characters of
embeds per message, action-row counts). Errors come back as Discord's nested ``errors`` tree."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import jsonschema
import orjson
from jsonschema.exceptions import best_match

from . import limits as L
from .errors import field_error, merge_errors
from .monetization import premium_button_errors

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]
SCHEMAS_ENV = "GATECORD_DISCORD_SCHEMAS"

# Which request schema applies to which operation.
OPERATION_SCHEMAS = {
    "message_create": "MessageCreateRequest",
    "message_edit": "MessageEditRequestPartial",
    "webhook_execute": "IncomingWebhookRequestPartial",
    "webhook_edit": "IncomingWebhookUpdateRequestPartial",
}
CALLBACK_SCHEMAS = {
    1: "PongInteractionCallbackRequest",
    4: "CreateMessageInteractionCallbackRequest",
    5: "CreateMessageInteractionCallbackRequest",
    6: "UpdateMessageInteractionCallbackRequest",
    7: "UpdateMessageInteractionCallbackRequest",
    8: "ApplicationCommandAutocompleteCallbackRequest",
    9: "ModalInteractionCallbackRequest",
    12: "LaunchActivityInteractionCallbackRequest",
}
COMPONENTS_V2_FLAG = 1 << 15


def default_schemas_path() -> Path:
    """``$GATECORD_DISCORD_SCHEMAS``, else ``<repo>/../shared/discord-schemas.json``, else the copy
    shipped in this package (an unmodified copy, so a clean checkout works)."""
    env = os.environ.get(SCHEMAS_ENV)
    if env:
        return Path(env)
    shared = REPO_ROOT.parent / "shared" / "discord-schemas.json"
    if shared.is_file():
        return shared
    return PACKAGE_DIR / "discord-schemas.json"


_ERROR_CODES = {
    "maxLength": ("BASE_TYPE_MAX_LENGTH", "Must be {limit} or fewer in length."),
    "maxItems": ("BASE_TYPE_MAX_LENGTH", "Must be {limit} or fewer in length."),
    "minLength": ("BASE_TYPE_MIN_LENGTH", "Must be {limit} or more in length."),
    "minItems": ("BASE_TYPE_MIN_LENGTH", "Must be {limit} or more in length."),
    "required": ("BASE_TYPE_REQUIRED", "This field is required"),
    "enum": ("BASE_TYPE_CHOICES", "Value must be one of {limit}."),
    "type": ("BASE_TYPE_BAD_TYPE", "Value is not of the expected type."),
    "maximum": ("NUMBER_TYPE_MAX", "int value should be less than or equal to {limit}."),
    "minimum": ("NUMBER_TYPE_MIN", "int value should be greater than or equal to {limit}."),
}


_MEMO_MAX_PAYLOAD = 2048  # bytes of canonical JSON; larger bodies are validated every time
_MEMO_ENTRIES = 4096


class SchemaValidator:
    """Compiled validators for the request schemas in discord-schemas.json."""

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = Path(path) if path is not None else default_schemas_path()
        with open(self.path, encoding="utf-8") as fh:
            document = json.load(fh)
        components = copy.deepcopy(document["components"])
        # Discord accepts snowflakes as JSON integers as well as strings (discord.py sends ints).
        snowflake = components["schemas"]["SnowflakeType"]
        components["schemas"]["SnowflakeType"] = {"anyOf": [snowflake, {"type": "integer", "minimum": 0}]}
        self._components = components
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self._memo: dict[tuple[str, str, tuple[Any, ...]], dict[str, Any]] = {}

    def schema_names(self) -> list[str]:
        return sorted(self._components["schemas"])

    def _validator(self, name: str) -> Any:
        validator = self._validators.get(name)
        if validator is None:
            schema = {"$ref": f"#/components/schemas/{name}", "components": self._components}
            validator = jsonschema.Draft202012Validator(schema)
            self._validators[name] = validator
        return validator

    def errors(self, name: str, payload: Any, prefix: tuple[Any, ...] = ()) -> dict[str, Any]:
        """Discord-style error tree for ``payload`` against schema ``name`` ({} when valid).

        Validation is a pure function of (schema, payload), and bots send the same small bodies
        again and again (every deferral is ``{"type": 5, ...}``), so small payloads' results are
        remembered: pure-Python jsonschema would otherwise be most of the emulator's cost per
        interaction and distort latency measurements of the bot.
        """
        try:
            key = (name, orjson.dumps(payload, option=orjson.OPT_SORT_KEYS), prefix)
        except TypeError:  # not JSON (orjson's errors are TypeErrors)
            return self._errors(name, payload, prefix)
        if len(key[1]) > _MEMO_MAX_PAYLOAD:
            return self._errors(name, payload, prefix)
        cached = self._memo.get(key)
        if cached is None:
            cached = self._errors(name, payload, prefix)
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = cached
        return copy.deepcopy(cached)

    def _errors(self, name: str, payload: Any, prefix: tuple[Any, ...]) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        for err in self._validator(name).iter_errors(payload):
            for best in _leaves(err):
                self._add(tree, best, prefix)
        return tree

    @staticmethod
    def _add(tree: dict[str, Any], best: Any, prefix: tuple[Any, ...]) -> None:
        path = list(prefix) + list(best.absolute_path)
        if best.validator == "required":
            missing = best.message.split("'")[1] if "'" in best.message else ""
            path.append(missing)
        code, msg = _ERROR_CODES.get(str(best.validator), ("BASE_TYPE_INVALID", "{message}"))
        message = msg.format(limit=best.validator_value, message=best.message[:200])
        merge_errors(tree, field_error(path, code, message))


def _is_discriminator_miss(sub: Any) -> bool:
    rel = list(sub.relative_path)
    return (sub.validator == "type" and not rel) or (sub.validator in ("enum", "const") and rel == ["type"])


def _leaves(err: Any) -> list[Any]:
    """Descend through oneOf/anyOf into the branch the payload meant (its ``type`` matched),
    so errors name the real field instead of "not valid under any of the given schemas"."""
    if err.validator not in ("oneOf", "anyOf") or not err.context:
        return [err]
    branches: dict[Any, list[Any]] = {}
    for sub in err.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    viable = [subs for subs in branches.values() if not any(_is_discriminator_miss(s) for s in subs)]
    if not viable:
        best = best_match([err])
        return [best] if best is not None and best is not err and not best.context else [err]
    chosen = min(viable, key=len)
    out: list[Any] = []
    for sub in chosen:
        out.extend(_leaves(sub))
    return out


def embed_length(embed: dict[str, Any]) -> int:
    """Characters that count toward the 6000 total: title, description, field names and values,
    footer text and author name."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    for f in embed.get("fields") or []:
        if isinstance(f, dict):
            total += len(str(f.get("name") or "")) + len(str(f.get("value") or ""))
    footer = embed.get("footer") or {}
    author = embed.get("author") or {}
    if isinstance(footer, dict):
        total += len(footer.get("text") or "")
    if isinstance(author, dict):
        total += len(author.get("name") or "")
    return total


def _max_len(tree: dict[str, Any], path: list[Any], value: Any, limit: int) -> None:
    if isinstance(value, (str, list)) and len(value) > limit:
        merge_errors(tree, field_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."))


def limit_errors(payload: dict[str, Any], prefix: tuple[Any, ...] = ()) -> dict[str, Any]:
    """Discord's own limits on a message body, beyond what the JSON schema states."""
    tree: dict[str, Any] = {}
    if not isinstance(payload, dict):
        return tree
    pre = list(prefix)
    _max_len(tree, pre + ["content"], payload.get("content"), L.CONTENT_MAX)

    embeds = payload.get("embeds")
    if isinstance(embeds, list):
        _max_len(tree, pre + ["embeds"], embeds, L.EMBEDS_MAX)
        total = 0
        for i, embed in enumerate(embeds):
            if not isinstance(embed, dict):
                continue
            at = pre + ["embeds", i]
            _max_len(tree, at + ["title"], embed.get("title"), L.EMBED_TITLE_MAX)
            _max_len(tree, at + ["description"], embed.get("description"), L.EMBED_DESCRIPTION_MAX)
            fields = embed.get("fields")
            _max_len(tree, at + ["fields"], fields, L.EMBED_FIELDS_MAX)
            for j, f in enumerate(fields or []):
                if isinstance(f, dict):
                    _max_len(tree, at + ["fields", j, "name"], f.get("name"), L.EMBED_FIELD_NAME_MAX)
                    _max_len(tree, at + ["fields", j, "value"], f.get("value"), L.EMBED_FIELD_VALUE_MAX)
            if isinstance(embed.get("footer"), dict):
                _max_len(tree, at + ["footer", "text"], embed["footer"].get("text"), L.EMBED_FOOTER_MAX)
            if isinstance(embed.get("author"), dict):
                _max_len(tree, at + ["author", "name"], embed["author"].get("name"), L.EMBED_AUTHOR_NAME_MAX)
            total += embed_length(embed)
        if total > L.EMBED_TOTAL_MAX:
            merge_errors(
                tree,
                field_error(
                    pre + ["embeds"],
                    "MAX_EMBED_SIZE_EXCEEDED",
                    f"Embed size exceeds maximum size of {L.EMBED_TOTAL_MAX}",
                ),
            )

    components = payload.get("components")
    flags = payload.get("flags") or 0
    if isinstance(components, list) and not (isinstance(flags, int) and flags & COMPONENTS_V2_FLAG):
        _max_len(tree, pre + ["components"], components, L.ACTION_ROWS_MAX)
        seen: set[str] = set()
        for i, row in enumerate(components):
            if not isinstance(row, dict):
                continue
            children = row.get("components")
            _max_len(tree, pre + ["components", i, "components"], children, L.BUTTONS_PER_ROW_MAX)
            for j, item in enumerate(children or []):
                if not isinstance(item, dict):
                    continue
                at = pre + ["components", i, "components", j]
                cid = item.get("custom_id")
                _max_len(tree, at + ["custom_id"], cid, L.CUSTOM_ID_MAX)
                if item.get("type") == 2:
                    is_link = item.get("style") in (5, 6)
                    if not is_link and not cid:
                        merge_errors(tree, field_error(at + ["custom_id"], "BASE_TYPE_REQUIRED", "This field is required"))
                if isinstance(cid, str):
                    if cid in seen:
                        merge_errors(
                            tree,
                            field_error(at + ["custom_id"], "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"),
                        )
                    seen.add(cid)
    return tree


def _dedupe(tree: dict[str, Any]) -> dict[str, Any]:
    for key, value in tree.items():
        if key == "_errors":
            unique: list[Any] = []
            for e in value:
                if e not in unique and not any(u["code"] == e["code"] for u in unique):
                    unique.append(e)
            tree[key] = unique
        elif isinstance(value, dict):
            _dedupe(value)
    return tree


class MessageValidator:
    """Schema + limit checks for one operation; returns an errors tree ({} when valid).

    ``known_skus`` (set by the emulator): the application's SKU ids, which a premium button must name."""

    def __init__(self, schemas: SchemaValidator, known_skus: Optional[Callable[[], set[int]]] = None) -> None:
        self.schemas = schemas
        self.known_skus = known_skus

    def _premium(self, payload: dict[str, Any], prefix: tuple[Any, ...]) -> dict[str, Any]:
        skus = self.known_skus() if self.known_skus is not None else None
        return premium_button_errors(payload.get("components"), prefix, skus)

    def message(self, operation: str, payload: Any, prefix: tuple[Any, ...] = ()) -> dict[str, Any]:
        tree = limit_errors(payload, prefix) if isinstance(payload, dict) else {}
        if isinstance(payload, dict):
            merge_errors(tree, self._premium(payload, prefix))
        merge_errors(tree, self.schemas.errors(OPERATION_SCHEMAS[operation], payload, prefix))
        return _dedupe(tree)

    def callback(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), int):
            return field_error(["type"], "BASE_TYPE_REQUIRED", "This field is required")
        ctype = payload["type"]
        name = CALLBACK_SCHEMAS.get(ctype)
        if name is None:
            return field_error(["type"], "BASE_TYPE_CHOICES", f"Value must be one of {sorted(CALLBACK_SCHEMAS)}.")
        tree = self.schemas.errors(name, payload)
        data = payload.get("data")
        if ctype in (4, 5, 7) and isinstance(data, dict):
            merge_errors(tree, limit_errors(data, ("data",)))
            merge_errors(tree, self._premium(data, ("data",)))
        if ctype == 8 and isinstance(data, dict):
            _max_len(tree, ["data", "choices"], data.get("choices"), L.AUTOCOMPLETE_CHOICES_MAX)
        return _dedupe(tree)
