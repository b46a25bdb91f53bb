"""Validate a ``/send-data`` body against Discord's limits and normalise it into a ``RelayMessage``.

Accepts DigiCord's payload (``channelId``, empty strings / nulls for unused embed fields) and the
message fields of Discohook's JSON. Empty strings and nulls count as absent; an embed field whose
name and value are both empty is dropped. Every problem is reported with its JSON path and the
rule it breaks; nothing is stored unless the whole body is valid.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from bot.rendering import limits as L

MAX_ISSUES = 50
URL_MAX = 2048
BUTTON_URL_MAX = 512
SNOWFLAKE_MAX = (1 << 63) - 1
SNOWFLAKE_DIGITS = len(str(SNOWFLAKE_MAX))
MENTION_IDS_MAX = 100
MENTION_KINDS = ("users", "roles", "everyone")
EMOJI_NAME_MAX = 100
URL_SCHEMES = ("http", "https")
BUTTON_URL_SCHEMES = ("http", "https", "discord")
COLOR_MAX = 0xFFFFFF
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
ALLOWED_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS
FORBIDDEN_USERNAME_PARTS = ("discord", "clyde")
FORBIDDEN_USERNAMES = ("everyone", "here")
LINK_BUTTON_STYLE = 5
COMPONENT_NAMES: dict[int, str] = {  # looked up (through _lookup) with whatever "type" a payload sent
    1: "action row", 2: "button", 3: "string select", 4: "text input", 5: "user select", 6: "role select",
    7: "mentionable select", 8: "channel select", 9: "section", 10: "text display", 11: "thumbnail",
    12: "media gallery", 13: "file", 14: "separator", 17: "container",
}
BUTTON_STYLES: dict[int, str] = {1: "primary", 2: "secondary", 3: "success", 4: "danger", 5: "link", 6: "premium"}

TOP_LEVEL_FIELDS = frozenset(
    {"channelId", "channel_id", "content", "embeds", "components", "allowed_mentions", "username", "avatar_url",
     "tts", "flags", "attachments"}
)
UNSUPPORTED_FIELDS = {
    "files": "file uploads are not supported by the relay",
    "file": "file uploads are not supported by the relay",
    "poll": "polls are not supported by the relay",
    "sticker_ids": "stickers are not supported by the relay",
    "message_reference": "replies are not supported by the relay",
    "thread_name": "creating forum threads is not supported by the relay; post to an existing thread's id",
    "applied_tags": "forum tags are not supported by the relay",
}
EMBED_FIELDS = frozenset(
    {"title", "description", "url", "color", "timestamp", "footer", "image", "thumbnail", "author", "fields", "type"}
)


@dataclass(frozen=True, slots=True)
class Issue:
    """One broken rule: where (JSON path, e.g. ``$.embeds[0].title``), which rule, and a sentence."""

    path: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "rule": self.rule, "message": self.message}


class PayloadError(Exception):
    """The body breaks one or more rules; ``issues`` lists them all (up to ``MAX_ISSUES``)."""

    def __init__(self, issues: list[Issue]) -> None:
        first = issues[0]
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(f"{first.path}: {first.message}{more}")
        self.issues = issues


@dataclass(slots=True)
class RelayMessage:
    """A validated, normalised post. ``embeds``/``components`` are already in Discord's JSON shape."""

    channel_id: int
    content: str | None = None
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    username: str | None = None
    avatar_url: str | None = None
    tts: bool = False
    flags: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def via_webhook(self) -> bool:
        """A custom name or avatar needs a channel webhook (a bot cannot post under another name)."""
        return self.username is not None or self.avatar_url is not None

    def discord_body(self, *, allow_mentions: bool) -> dict[str, Any]:
        """The JSON sent to Discord (without nonce); mentions are off unless the key allows them."""
        body: dict[str, Any] = {}
        if self.content is not None:
            body["content"] = self.content
        if self.embeds:
            body["embeds"] = self.embeds
        if self.components:
            body["components"] = self.components
        if self.tts:
            body["tts"] = True
        if self.flags:
            body["flags"] = self.flags
        if allow_mentions and self.allowed_mentions is not None:
            body["allowed_mentions"] = self.allowed_mentions
        else:
            body["allowed_mentions"] = {"parse": []}
        if self.username is not None:
            body["username"] = self.username
        if self.avatar_url is not None:
            body["avatar_url"] = self.avatar_url
        return body

    def fingerprint(self) -> str:
        """Hash of the normalised post, to tell an idempotent replay from a reused key with a new body."""
        data = {
            "channel_id": self.channel_id, "content": self.content, "embeds": self.embeds,
            "components": self.components, "allowed_mentions": self.allowed_mentions, "username": self.username,
            "avatar_url": self.avatar_url, "tts": self.tts, "flags": self.flags,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


class _Checker:
    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.warnings: list[str] = []

    def fail(self, path: str, rule: str, message: str) -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(Issue(path, rule, message))

    # -- primitives -------------------------------------------------------------------------------
    def string(
        self, value: Any, path: str, *, max_len: int, required: bool = False, strip_empty: bool = True
    ) -> str | None:
        if _absent(value):
            if required:
                self.fail(path, "required", "is required and must not be empty")
            return None
        if not isinstance(value, str):
            self.fail(path, "type:string", f"must be a string, not {_json_type(value)}")
            return None
        if strip_empty and not value.strip():
            if required:
                self.fail(path, "required", "must not be blank")
            return None
        if len(value) > max_len:
            self.fail(path, f"max_length:{max_len}", f"must be at most {max_len} characters (got {len(value)})")
            return None
        if not _is_unicode(value):
            self.fail(path, "unicode",
                      "contains a lone UTF-16 surrogate (an unpaired \\ud800–\\udfff escape), which is not text")
            return None
        return value

    def url(
        self, value: Any, path: str, *, max_len: int = URL_MAX, schemes: tuple[str, ...] = URL_SCHEMES
    ) -> str | None:
        text = self.string(value, path, max_len=max_len)
        if text is None:
            return None
        try:
            parts = urlsplit(text)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme.lower() not in schemes
            or (parts.scheme.lower() != "discord" and not parts.netloc)
        ):
            allowed = " or ".join(f"{s}://" for s in schemes)
            if parts is not None and parts.scheme.lower() == "attachment":
                self.fail(path, "url", "attachment:// URLs need an uploaded file; the relay does not accept files")
            else:
                self.fail(path, "url", f"must be an absolute {allowed} URL")
            return None
        return text

    def boolean(self, value: Any, path: str) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(path, "type:boolean", f"must be true or false, not {_json_type(value)}")
            return None
        return value

    def snowflake(self, value: Any, path: str, *, required: bool = False) -> int | None:
        if _absent(value):
            if required:
                self.fail(path, "required", "is required (a Discord id, e.g. \"123456789012345678\")")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(path, "type:snowflake", f"must be a Discord id (string of digits), not {_json_type(value)}")
            return None
        text = str(value).strip()
        if not text.isdigit() or not text.isascii():
            self.fail(path, "type:snowflake", "must be a Discord id made of digits")
            return None
        if len(text.lstrip("0")) > SNOWFLAKE_DIGITS:  # before int(): CPython refuses over 4,300 digits
            self.fail(path, "range:snowflake", "is not a valid Discord id")
            return None
        number = int(text.lstrip("0") or "0")
        if not 0 < number <= SNOWFLAKE_MAX:
            self.fail(path, "range:snowflake", "is not a valid Discord id")
            return None
        return number

    def array(self, value: Any, path: str, *, max_items: int) -> list[Any] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(path, "type:array", f"must be an array, not {_json_type(value)}")
            return None
        if len(value) > max_items:
            self.fail(path, f"max_items:{max_items}", f"must have at most {max_items} items (got {len(value)})")
            return None
        return value

    def obj(self, value: Any, path: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(path, "type:object", f"must be an object, not {_json_type(value)}")
            return None
        return value

    def unknown(self, data: dict[str, Any], known: frozenset[str] | set[str], path: str) -> None:
        for key in data:
            if key not in known:
                self.warnings.append(f"{path}.{key} is not a known field and was ignored")

    # -- embeds -----------------------------------------------------------------------------------
    def embed(self, value: Any, path: str) -> tuple[dict[str, Any] | None, int]:
        data = self.obj(value, path)
        if data is None:
            if value is None:
                self.fail(path, "type:object", "must be an embed object, not null")
            return None, 0
        self.unknown(data, EMBED_FIELDS, path)
        out: dict[str, Any] = {}
        chars = 0
        if data.get("type") not in (None, "", "rich"):
            self.fail(f"{path}.type", "enum:rich", "only \"rich\" embeds can be sent")
        title = self.string(data.get("title"), f"{path}.title", max_len=L.EMBED_TITLE)
        if title is not None:
            out["title"] = title
            chars += len(title)
        description = self.string(data.get("description"), f"{path}.description", max_len=L.EMBED_DESCRIPTION)
        if description is not None:
            out["description"] = description
            chars += len(description)
        url = self.url(data.get("url"), f"{path}.url")
        if url is not None:
            out["url"] = url
        color = self.color(data.get("color"), f"{path}.color")
        if color is not None:
            out["color"] = color
        timestamp = self.timestamp(data.get("timestamp"), f"{path}.timestamp")
        if timestamp is not None:
            out["timestamp"] = timestamp
        footer = self.obj(data.get("footer"), f"{path}.footer")
        if footer is not None:
            self.unknown(footer, {"text", "icon_url", "proxy_icon_url"}, f"{path}.footer")
            icon = self.url(footer.get("icon_url"), f"{path}.footer.icon_url")
            text = self.string(
                footer.get("text"), f"{path}.footer.text", max_len=L.EMBED_FOOTER, required=icon is not None
            )
            if text is not None:
                out["footer"] = {"text": text, **({"icon_url": icon} if icon else {})}
                chars += len(text)
        for media in ("image", "thumbnail"):
            part = self.obj(data.get(media), f"{path}.{media}")
            if part is not None:
                self.unknown(part, {"url", "proxy_url", "height", "width"}, f"{path}.{media}")
                media_url = self.url(part.get("url"), f"{path}.{media}.url")
                if media_url is not None:
                    out[media] = {"url": media_url}
        author = self.obj(data.get("author"), f"{path}.author")
        if author is not None:
            self.unknown(author, {"name", "url", "icon_url", "proxy_icon_url"}, f"{path}.author")
            a_url = self.url(author.get("url"), f"{path}.author.url")
            a_icon = self.url(author.get("icon_url"), f"{path}.author.icon_url")
            name = self.string(
                author.get("name"), f"{path}.author.name", max_len=L.EMBED_AUTHOR, required=bool(a_url or a_icon)
            )
            if name is not None:
                out["author"] = {
                    "name": name, **({"url": a_url} if a_url else {}), **({"icon_url": a_icon} if a_icon else {}),
                }
                chars += len(name)
        fields = self.array(data.get("fields"), f"{path}.fields", max_items=L.EMBED_FIELDS)
        if fields:
            kept = []
            for i, item in enumerate(fields):
                fpath = f"{path}.fields[{i}]"
                fdata = self.obj(item, fpath)
                if fdata is None:
                    if item is None:
                        self.fail(fpath, "type:object", "must be a field object, not null")
                    continue
                self.unknown(fdata, {"name", "value", "inline"}, fpath)
                if _absent(fdata.get("name")) and _absent(fdata.get("value")):
                    continue  # an unused placeholder field, as in DigiCord's example
                fname = self.string(fdata.get("name"), f"{fpath}.name", max_len=L.EMBED_FIELD_NAME, required=True)
                fvalue = self.string(fdata.get("value"), f"{fpath}.value", max_len=L.EMBED_FIELD_VALUE, required=True)
                inline = self.boolean(fdata.get("inline"), f"{fpath}.inline")
                if fname is not None and fvalue is not None:
                    entry: dict[str, Any] = {"name": fname, "value": fvalue}
                    if inline:
                        entry["inline"] = True
                    kept.append(entry)
                    chars += len(fname) + len(fvalue)
            if kept:
                out["fields"] = kept
        visible = {"title", "description", "fields", "image", "thumbnail", "author", "footer"}
        if not visible & out.keys() and not any(i.path == path or i.path.startswith((path + ".", path + "["))
                                                for i in self.issues):
            self.fail(path, "embed_not_empty",
                      "has nothing to show (needs a title, description, field, image, author or footer)")
            return None, 0
        return out, chars

    def color(self, value: Any, path: str) -> int | None:
        if _absent(value):
            return None
        if isinstance(value, str):
            text = value.strip().lower().removeprefix("#").removeprefix("0x")
            try:
                number = int(text, 16)
            except ValueError:
                self.fail(path, "type:color", "must be an integer 0–16777215 or a hex colour like \"#5865F2\"")
                return None
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            self.fail(path, "type:color", f"must be an integer 0–16777215, not {_json_type(value)}")
            return None
        if not 0 <= number <= COLOR_MAX:
            self.fail(path, f"range:0-{COLOR_MAX}", f"must be between 0 and {COLOR_MAX} (0xFFFFFF)")
            return None
        return number

    def timestamp(self, value: Any, path: str) -> str | None:
        if _absent(value):
            return None
        if not isinstance(value, str):
            self.fail(path, "type:timestamp", f"must be an ISO 8601 timestamp string, not {_json_type(value)}")
            return None
        try:
            datetime.fromisoformat(value)
        except ValueError:
            self.fail(path, "format:iso8601", "must be an ISO 8601 timestamp, e.g. 2024-05-01T12:00:00Z")
            return None
        return value

    # -- components -------------------------------------------------------------------------------
    def components(self, value: Any, path: str) -> list[dict[str, Any]]:
        rows = self.array(value, path, max_items=L.ACTION_ROWS)
        out: list[dict[str, Any]] = []
        for r, row in enumerate(rows or []):
            rpath = f"{path}[{r}]"
            rdata = self.obj(row, rpath)
            if rdata is None:
                if row is None:
                    self.fail(rpath, "type:object", "must be an action row object, not null")
                continue
            row_type = rdata.get("type")
            if not _is_int(row_type):
                self.fail(f"{rpath}.type", "type:integer", f"must be 1 (an action row), not {_json_type(row_type)}")
                continue
            if row_type != 1:
                kind = _component_name(row_type)
                self.fail(f"{rpath}.type", "component:link_button_only",
                          f"must be an action row (type 1) holding link buttons; "
                          f"a {kind} is not allowed at the top level")
                continue
            before = len(self.issues)
            buttons = self.array(rdata.get("components"), f"{rpath}.components", max_items=L.BUTTONS_PER_ROW)
            if not buttons:
                if len(self.issues) == before:
                    self.fail(f"{rpath}.components", "min_items:1", "an action row needs 1 to 5 link buttons")
                continue
            kept = []
            for b, button in enumerate(buttons):
                bpath = f"{rpath}.components[{b}]"
                parsed = self.link_button(button, bpath)
                if parsed is not None:
                    kept.append(parsed)
            out.append({"type": 1, "components": kept})
        return out

    def link_button(self, value: Any, path: str) -> dict[str, Any] | None:
        data = self.obj(value, path)
        if data is None:
            if value is None:
                self.fail(path, "type:object", "must be a button object, not null")
            return None
        kind = data.get("type")
        if not _is_int(kind):
            self.fail(f"{path}.type", "type:integer", f"must be 2 (a button), not {_json_type(kind)}")
            return None
        if kind != 2:
            name = _component_name(kind)
            self.fail(f"{path}.type", "component:link_button_only",
                      f"a {name} is not allowed: only link buttons (type 2, style 5) can be relayed, "
                      "interactive components would have nothing to answer them")
            return None
        style = data.get("style")
        if not _is_int(style):
            self.fail(f"{path}.style", "type:integer",
                      f"must be {LINK_BUTTON_STYLE} (a link button), not {_json_type(style)}")
            return None
        if style != LINK_BUTTON_STYLE:
            name = BUTTON_STYLES.get(style, f"style {style}")
            self.fail(f"{path}.style", "component:link_button_only",
                      f"a {name} button is not allowed: only link buttons (style 5) can be relayed, "
                      "interactive buttons would have nothing to answer them")
            return None
        if not _absent(data.get("custom_id")):
            self.fail(f"{path}.custom_id", "component:link_button_only", "a link button has a url, not a custom_id")
        if not _absent(data.get("sku_id")):
            self.fail(f"{path}.sku_id", "component:link_button_only", "premium buttons are not allowed")
        self.unknown(data, {"type", "style", "label", "url", "emoji", "disabled", "custom_id", "sku_id", "id"}, path)
        out: dict[str, Any] = {"type": 2, "style": LINK_BUTTON_STYLE}
        url = self.url(data.get("url"), f"{path}.url", max_len=BUTTON_URL_MAX, schemes=BUTTON_URL_SCHEMES)
        if url is None and _absent(data.get("url")):
            self.fail(f"{path}.url", "required", "a link button needs a url")
        label = self.string(data.get("label"), f"{path}.label", max_len=L.BUTTON_LABEL)
        emoji = self.emoji(data.get("emoji"), f"{path}.emoji")
        if label is None and emoji is None and _absent(data.get("label")):
            self.fail(f"{path}.label", "required", "a button needs a label or an emoji")
        disabled = self.boolean(data.get("disabled"), f"{path}.disabled")
        if url is not None:
            out["url"] = url
        if label is not None:
            out["label"] = label
        if emoji is not None:
            out["emoji"] = emoji
        if disabled:
            out["disabled"] = True
        return out

    def emoji(self, value: Any, path: str) -> dict[str, Any] | None:
        if value is None:
            return None
        data = self.obj(value, path)
        if data is None:
            return None
        out: dict[str, Any] = {}
        emoji_id = self.snowflake(data.get("id"), f"{path}.id")
        name = self.string(data.get("name"), f"{path}.name", max_len=EMOJI_NAME_MAX, required=emoji_id is None)
        animated = self.boolean(data.get("animated"), f"{path}.animated")
        if emoji_id is not None:
            out["id"] = str(emoji_id)
        if name is not None:
            out["name"] = name
        if animated:
            out["animated"] = True
        return out or None

    # -- mentions ---------------------------------------------------------------------------------
    def allowed_mentions(self, value: Any, path: str) -> dict[str, Any] | None:
        data = self.obj(value, path)
        if data is None:
            return None
        self.unknown(data, {"parse", "users", "roles", "replied_user"}, path)
        out: dict[str, Any] = {}
        parse = self.array(data.get("parse"), f"{path}.parse", max_items=len(MENTION_KINDS))
        if parse is not None:
            kinds = []
            for i, kind in enumerate(parse):
                if kind not in MENTION_KINDS:
                    self.fail(f"{path}.parse[{i}]", "enum:users|roles|everyone",
                              "must be \"users\", \"roles\" or \"everyone\"")
                elif kind not in kinds:
                    kinds.append(kind)
            out["parse"] = kinds
        else:
            out["parse"] = []
        for kind in ("users", "roles"):
            ids = self.array(data.get(kind), f"{path}.{kind}", max_items=MENTION_IDS_MAX)
            if ids is None:
                continue
            parsed = [self.snowflake(x, f"{path}.{kind}[{i}]", required=True) for i, x in enumerate(ids)]
            if kind in out["parse"] and ids:
                self.fail(f"{path}.{kind}", "mutually_exclusive",
                          f"cannot list {kind} ids while parse contains \"{kind}\" (Discord rejects both)")
            out[kind] = [str(x) for x in parsed if x is not None]
        replied = self.boolean(data.get("replied_user"), f"{path}.replied_user")
        if replied is not None:
            out["replied_user"] = replied
        return out


def _is_unicode(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (JSON's ``"\\ud800"``): such a string cannot be
    encoded as UTF-8, so it could be neither stored nor sent to Discord."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_int(value: Any) -> TypeGuard[int]:
    """A JSON integer: checked before any table lookup (an object or array sent there is not hashable)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _component_name(kind: int) -> str:
    return COMPONENT_NAMES.get(kind, f"component type {kind}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def validate_payload(body: Any) -> RelayMessage:
    """Check every field of a ``/send-data`` body; raise ``PayloadError`` listing all broken rules."""
    c = _Checker()
    if not isinstance(body, dict):
        raise PayloadError([Issue("$", "type:object", f"the body must be a JSON object, not {_json_type(body)}")])
    for key, reason in UNSUPPORTED_FIELDS.items():
        if key in body and not _absent(body[key]) and body[key] != []:
            c.fail(f"$.{key}", "unsupported", reason)
    c.unknown(body, TOP_LEVEL_FIELDS | UNSUPPORTED_FIELDS.keys(), "$")

    channel_id = None
    if not _absent(body.get("channelId")) and not _absent(body.get("channel_id")):
        a = c.snowflake(body["channelId"], "$.channelId")
        b = c.snowflake(body["channel_id"], "$.channel_id")
        if a is not None and b is not None and a != b:
            c.fail("$.channel_id", "conflict", "channelId and channel_id name different channels")
        channel_id = a
    elif not _absent(body.get("channel_id")):
        channel_id = c.snowflake(body["channel_id"], "$.channel_id", required=True)
    else:
        channel_id = c.snowflake(body.get("channelId"), "$.channelId", required=True)

    content = c.string(body.get("content"), "$.content", max_len=L.MESSAGE_CONTENT)

    embeds: list[dict[str, Any]] = []
    raw_embeds = c.array(body.get("embeds"), "$.embeds", max_items=L.EMBEDS_PER_MESSAGE)
    total = 0
    for i, item in enumerate(raw_embeds or []):
        embed, chars = c.embed(item, f"$.embeds[{i}]")
        if embed is not None:
            embeds.append(embed)
            total += chars
    if total > L.EMBED_TOTAL:
        c.fail("$.embeds", f"max_total_characters:{L.EMBED_TOTAL}",
               f"titles, descriptions, field names/values, footers and author names together must be at most "
               f"{L.EMBED_TOTAL} characters (got {total})")

    components = c.components(body.get("components"), "$.components")

    allowed = c.allowed_mentions(body.get("allowed_mentions"), "$.allowed_mentions")

    username = c.string(body.get("username"), "$.username", max_len=L.USERNAME)
    if username is not None:
        lowered = username.lower()
        if any(part in lowered for part in FORBIDDEN_USERNAME_PARTS) or lowered.strip() in FORBIDDEN_USERNAMES:
            c.fail("$.username", "username:forbidden",
                   "Discord does not allow \"discord\", \"clyde\", \"everyone\" or \"here\" in a webhook name")
            username = None
        else:
            username = username.strip()
    avatar_url = c.url(body.get("avatar_url"), "$.avatar_url")
    tts = c.boolean(body.get("tts"), "$.tts") or False

    flags = 0
    raw_flags = body.get("flags")
    if raw_flags is not None:
        if isinstance(raw_flags, bool) or not isinstance(raw_flags, int):
            c.fail("$.flags", "type:integer", f"must be an integer, not {_json_type(raw_flags)}")
        elif raw_flags & ~ALLOWED_FLAGS or raw_flags < 0:
            c.fail("$.flags", f"allowed_bits:{ALLOWED_FLAGS}",
                   "only SUPPRESS_EMBEDS (4) and SUPPRESS_NOTIFICATIONS (4096) may be set")
        else:
            flags = raw_flags

    attachments = body.get("attachments")
    if attachments not in (None, []):
        if isinstance(attachments, list):
            c.fail("$.attachments", "unsupported", "file attachments are not supported by the relay")
        else:
            c.fail("$.attachments", "type:array", f"must be an array, not {_json_type(attachments)}")

    if not c.issues and content is None and not embeds and not components:
        c.fail("$", "message_not_empty", "a message needs content, an embed or a link button")
    if c.issues:
        raise PayloadError(c.issues)
    assert channel_id is not None
    return RelayMessage(
        channel_id=channel_id, content=content, embeds=embeds, components=components, allowed_mentions=allowed,
        username=username, avatar_url=avatar_url, tts=tts, flags=flags, warnings=c.warnings,
    )
