"""Application command registry: bulk overwrite with Discord's validation, lookup for injection."""

from __future__ import annotations

import copy
import re
from typing import Any, Optional

from . import limits as L
from .errors import field_error, invalid_form, merge_errors
from .snowflake import SnowflakeFactory

CHAT_INPUT, USER, MESSAGE = 1, 2, 3
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
CHAT_NAME_RE = re.compile(r"^[-_'\w]{1,32}$", re.UNICODE)

OPTION_TYPES = {
    1: "SUB_COMMAND",
    2: "SUB_COMMAND_GROUP",
    3: "STRING",
    4: "INTEGER",
    5: "BOOLEAN",
    6: "USER",
    7: "CHANNEL",
    8: "ROLE",
    9: "MENTIONABLE",
    10: "NUMBER",
    11: "ATTACHMENT",
}


def _err(tree: dict[str, Any], path: list[Any], code: str, message: str) -> None:
    merge_errors(tree, field_error(path, code, message))


def _check_chat_name(tree: dict[str, Any], path: list[Any], name: Any) -> None:
    if not isinstance(name, str) or not CHAT_NAME_RE.match(name) or name != name.lower():
        _err(tree, path + ["name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _check_description(tree: dict[str, Any], path: list[Any], description: Any) -> None:
    if not isinstance(description, str) or not 1 <= len(description) <= L.COMMAND_DESCRIPTION_MAX:
        _err(
            tree,
            path + ["description"],
            "BASE_TYPE_BAD_LENGTH",
            f"Must be between 1 and {L.COMMAND_DESCRIPTION_MAX} in length.",
        )


def _check_options(tree: dict[str, Any], path: list[Any], options: Any, depth: int) -> None:
    if options is None:
        return
    if not isinstance(options, list):
        _err(tree, path, "BASE_TYPE_BAD_TYPE", "Value is not a list.")
        return
    if len(options) > L.COMMAND_OPTIONS_MAX:
        _err(tree, path, "BASE_TYPE_MAX_LENGTH", f"Must be {L.COMMAND_OPTIONS_MAX} or fewer in length.")
    seen: set[str] = set()
    optional_seen = False
    kinds = {o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options if isinstance(o, dict)}
    if len(kinds) > 1:
        _err(tree, path, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-command and sub-command group option types are mutually exclusive to all other types")
    for i, opt in enumerate(options):
        at = path + [i]
        if not isinstance(opt, dict):
            _err(tree, at, "BASE_TYPE_BAD_TYPE", "Value is not an object.")
            continue
        otype = opt.get("type")
        if otype not in OPTION_TYPES:
            _err(tree, at + ["type"], "BASE_TYPE_CHOICES", f"Value must be one of {sorted(OPTION_TYPES)}.")
            continue
        _check_chat_name(tree, at, opt.get("name"))
        _check_description(tree, at, opt.get("description"))
        name = opt.get("name")
        if name in seen:
            _err(tree, at + ["name"], "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS", "Option names must be unique")
        seen.add(name)
        if otype == SUB_COMMAND_GROUP:
            if depth > 0:
                _err(tree, at + ["type"], "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-command groups can only be top level")
            for j, child in enumerate(opt.get("options") or []):
                if isinstance(child, dict) and child.get("type") != SUB_COMMAND:
                    _err(tree, at + ["options", j, "type"], "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-command groups can only contain sub-commands")
            _check_options(tree, at + ["options"], opt.get("options"), depth + 1)
            continue
        if otype == SUB_COMMAND:
            if depth > 1:
                _err(tree, at + ["type"], "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-commands cannot be nested this deep")
            for j, child in enumerate(opt.get("options") or []):
                if isinstance(child, dict) and child.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP):
                    _err(tree, at + ["options", j, "type"], "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-commands cannot contain sub-commands")
            _check_options(tree, at + ["options"], opt.get("options"), depth + 2)
            continue
        if opt.get("required"):
            if optional_seen:
                _err(tree, at + ["required"], "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", "Required options must be placed before non-required options")
        else:
            optional_seen = True
        choices = opt.get("choices")
        if choices:
            if len(choices) > L.COMMAND_CHOICES_MAX:
                _err(tree, at + ["choices"], "BASE_TYPE_MAX_LENGTH", f"Must be {L.COMMAND_CHOICES_MAX} or fewer in length.")
            if opt.get("autocomplete"):
                _err(tree, at + ["autocomplete"], "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID", "Autocomplete cannot be set with choices")
            for j, ch in enumerate(choices):
                cname = ch.get("name") if isinstance(ch, dict) else None
                if not isinstance(cname, str) or not 1 <= len(cname) <= L.COMMAND_CHOICE_NAME_MAX:
                    _err(tree, at + ["choices", j, "name"], "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {L.COMMAND_CHOICE_NAME_MAX} in length.")
        if opt.get("autocomplete") and otype not in (3, 4, 10):
            _err(tree, at + ["autocomplete"], "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID", "Autocomplete is only allowed on string, integer and number options")


def validate_commands(payload: Any) -> dict[str, Any]:
    """Discord's checks on a bulk-overwrite body; returns an errors tree ({} when valid)."""
    tree: dict[str, Any] = {}
    if not isinstance(payload, list):
        _err(tree, [], "BASE_TYPE_BAD_TYPE", "Value is not a list.")
        return tree
    seen: set[tuple[str, int]] = set()
    counts = {CHAT_INPUT: 0, USER: 0, MESSAGE: 0}
    for i, cmd in enumerate(payload):
        if not isinstance(cmd, dict):
            _err(tree, [i], "BASE_TYPE_BAD_TYPE", "Value is not an object.")
            continue
        ctype = cmd.get("type", CHAT_INPUT)
        if ctype not in counts:
            _err(tree, [i, "type"], "BASE_TYPE_CHOICES", "Value must be one of [1, 2, 3, 4].")
            continue
        counts[ctype] += 1
        name = cmd.get("name")
        if ctype == CHAT_INPUT:
            _check_chat_name(tree, [i], name)
            _check_description(tree, [i], cmd.get("description"))
            _check_options(tree, [i, "options"], cmd.get("options"), 0)
        else:
            if not isinstance(name, str) or not 1 <= len(name) <= L.COMMAND_NAME_MAX:
                _err(tree, [i, "name"], "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {L.COMMAND_NAME_MAX} in length.")
            if cmd.get("description"):
                _err(tree, [i, "description"], "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION", "Context menu commands cannot have description")
        for field_name, allowed in (("integration_types", (0, 1)), ("contexts", (0, 1, 2))):
            value = cmd.get(field_name)
            if value is not None and (not isinstance(value, list) or any(v not in allowed for v in value)):
                _err(tree, [i, field_name], "BASE_TYPE_CHOICES", f"Value must be one of {set(allowed)}.")
        key = (str(name), ctype)
        if key in seen:
            _err(tree, [i, "name"], "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
        seen.add(key)
    if counts[CHAT_INPUT] > L.GLOBAL_CHAT_COMMANDS_MAX:
        _err(tree, [], "BASE_TYPE_MAX_LENGTH", f"Must be {L.GLOBAL_CHAT_COMMANDS_MAX} or fewer in length.")
    for ctype in (USER, MESSAGE):
        if counts[ctype] > L.CONTEXT_MENU_COMMANDS_MAX:
            _err(tree, [], "APPLICATION_COMMAND_TOO_MANY", "Maximum number of context menu commands reached")
    return tree


class CommandRegistry:
    """Registered commands per scope (None = global, else guild id), with stable ids."""

    def __init__(self, application_id: int, ids: SnowflakeFactory) -> None:
        self.application_id = application_id
        self.ids = ids
        self.scopes: dict[Optional[int], dict[tuple[str, int], dict[str, Any]]] = {}
        self._id_for: dict[tuple[Optional[int], str, int], int] = {}
        self.sync_count = 0

    def bulk_overwrite(self, guild_id: Optional[int], payload: Any) -> list[dict[str, Any]]:
        errors = validate_commands(payload)
        if errors:
            raise invalid_form(errors)
        stored: dict[tuple[str, int], dict[str, Any]] = {}
        for raw in payload:
            cmd = self._complete(guild_id, raw)
            stored[(cmd["name"], cmd["type"])] = cmd
        self.scopes[guild_id] = stored
        self.sync_count += 1
        return [copy.deepcopy(c) for c in stored.values()]

    def upsert(self, guild_id: Optional[int], raw: dict[str, Any]) -> dict[str, Any]:
        errors = validate_commands([raw])
        if errors:
            raise invalid_form({k: v for k, v in errors.get("0", errors).items()})
        cmd = self._complete(guild_id, raw)
        self.scopes.setdefault(guild_id, {})[(cmd["name"], cmd["type"])] = cmd
        return copy.deepcopy(cmd)

    def delete(self, guild_id: Optional[int], command_id: int) -> bool:
        scope = self.scopes.get(guild_id, {})
        for key, cmd in list(scope.items()):
            if int(cmd["id"]) == command_id:
                del scope[key]
                return True
        return False

    def _complete(self, guild_id: Optional[int], raw: dict[str, Any]) -> dict[str, Any]:
        cmd = copy.deepcopy(raw)
        cmd.setdefault("type", CHAT_INPUT)
        key = (guild_id, cmd["name"], cmd["type"])
        if key not in self._id_for:
            self._id_for[key] = self.ids.next()
        perms = cmd.get("default_member_permissions")
        cmd.update(
            id=str(self._id_for[key]),
            application_id=str(self.application_id),
            version=str(self.ids.next()),
            default_member_permissions=str(perms) if perms is not None else None,
            description=cmd.get("description", ""),
            options=cmd.get("options") or [],
            nsfw=cmd.get("nsfw", False),
            contexts=cmd.get("contexts"),
            integration_types=cmd.get("integration_types") or [0],
            name_localizations=cmd.get("name_localizations"),
            description_localizations=cmd.get("description_localizations"),
        )
        if guild_id is not None:
            cmd["guild_id"] = str(guild_id)
        return cmd

    def list(self, guild_id: Optional[int]) -> list[dict[str, Any]]:
        return [copy.deepcopy(c) for c in self.scopes.get(guild_id, {}).values()]

    def find(self, name: str, type: int, guild_id: Optional[int]) -> tuple[dict[str, Any], Optional[int]]:
        """The command a user in ``guild_id`` would see under ``name`` (guild scope wins)."""
        if guild_id is not None and (name, type) in self.scopes.get(guild_id, {}):
            return self.scopes[guild_id][(name, type)], guild_id
        if (name, type) in self.scopes.get(None, {}):
            return self.scopes[None][(name, type)], None
        raise KeyError(f"command {name!r} (type {type}) is not registered (did the bot sync its tree?)")

    def all_commands(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(c) for scope in self.scopes.values() for c in scope.values()]


def resolve_path(command: dict[str, Any], sub_names: list[str]) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
    """Walk "group sub" names; returns the (name, type) path and the leaf's option schemas."""
    path: list[tuple[str, int]] = []
    options = command.get("options") or []
    for sub in sub_names:
        match = next((o for o in options if o.get("name") == sub and o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)), None)
        if match is None:
            raise KeyError(f"{command['name']!r} has no sub-command {sub!r} at {[p[0] for p in path]}")
        path.append((sub, match["type"]))
        options = match.get("options") or []
    if any(o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options):
        raise KeyError(f"{command['name']} {' '.join(sub_names)} needs a sub-command")
    return path, options
