"""Per-guild and per-channel settings (models, system prompt, temperature, …), validated and audited.

Resolution, most specific first: the channel's override > its parent channel's (threads inherit)
> the guild's > the config file's defaults. Overrides live in ``config_values`` (channel_id 0 is
the guild level); every change goes through one transaction together with its audit row.

Many processes share the database: a guild's overrides are cached here for ``CACHE_SECONDS`` at
most, so a change made by another process is seen within that time; this process's own changes are
seen at once. Writes never trust the cache: they read the rows they replace, locked, in their own
transaction, so the audit's "old" value is the one really replaced.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import fields as dc_fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.chat.tools.names import DEFAULT as DEFAULT_TOOLS
from bot.chat.tools.names import TOOL_NAMES, ToolsSettingError, parse_tools_setting
from bot.gateways.defaults import default_model
from bot.gateways.directory import GatewayDirectory, is_guild_client
from bot.guilds import audit
from bot.guilds.audit import InvalidSetting
from bot.guilds.triggers import MAX_TRIGGERS, parse_triggers
from bot.rendering.errors import user_error_message
from bot.storage.store import Store
from bot.storage.tx import SyncTx, for_update
from gateway_client.errors import AuthenticationError, PermissionDenied

if TYPE_CHECKING:
    from bot.app.settings import Settings

__all__ = [
    "ConfigReport", "EffectiveConfig", "GuildConfig", "InvalidSetting", "FIELDS", "FIELD_HELP", "FIELD_LABELS",
]

log = logging.getLogger(__name__)

GUILD_LEVEL = 0
MAX_SYSTEM_PROMPT = 4000
MAX_MODEL_NAME = 200
MAX_TOKENS_CAP = 32_768
MAX_HISTORY = 100
#: how long a guild's overrides are reused before they are read again (another process may change them)
CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    chat_model: str
    vision_model: str
    image_model: str
    system_prompt: str
    temperature: float
    max_tokens: int
    history_messages: int
    answer_mentions: bool  # the bot answers mentions in this channel
    voice_replies: bool  # an answer to a voice message (or audio) is also spoken, as a voice message
    listen: bool = False  # the bot answers every message in the channel, each member in their own conversation
    auto_thread: bool = False  # a mention (with listen: any message) opens a thread, answered there
    triggers: tuple[str, ...] = ()  # words that count as a mention (whole words, any case)
    knowledge_search: bool = True  # members may run /knowledge search here (the server's knowledge base)
    #: a help channel (forum or text): each new post gets an answer from the knowledge base, when it has one
    auto_answer: bool = False
    tools: str = DEFAULT_TOOLS  # the functions chat may call here: "all" (that the gateway supports), "off", or a list


FIELDS: tuple[str, ...] = tuple(f.name for f in dc_fields(EffectiveConfig))
FIELD_LABELS: dict[str, str] = {
    "chat_model": "chat model",
    "vision_model": "vision model",
    "image_model": "image model",
    "system_prompt": "system prompt",
    "temperature": "temperature",
    "max_tokens": "max tokens",
    "history_messages": "history messages",
    "answer_mentions": "answer mentions",
    "voice_replies": "voice replies",
    "listen": "listen",
    "auto_thread": "auto thread",
    "triggers": "triggers",
    "knowledge_search": "knowledge search",
    "auto_answer": "auto answer",
    "tools": "tools",
}
#: what each setting does (``/config help``)
FIELD_HELP: dict[str, str] = {
    "chat_model": "the model that answers chat (/chat, mentions, replies, threads)",
    "vision_model": "the model that reads images",
    "image_model": "the model /imagine draws with",
    "system_prompt": "instructions the model gets before every conversation ({server}, {channel}, {user}, "
                     "{date} and {time} are filled in)",
    "temperature": "0 to 2: higher answers are more varied, lower ones more predictable",
    "max_tokens": "the longest answer, in tokens",
    "history_messages": "how many earlier messages of a conversation are sent with a new one",
    "answer_mentions": "answer when someone mentions the bot (or writes one of the trigger words)",
    "voice_replies": "an answer to a voice message is also spoken, as a voice message",
    "listen": "answer every message in the channel, no mention needed; each member keeps their own "
              "conversation (replying to someone else's answer continues your own)",
    "auto_thread": "a mention (with listen: any message) opens a public thread named after the question, "
                   "and the conversation continues there; needs the Create Public Threads permission",
    "triggers": f"up to {MAX_TRIGGERS} words, separated by commas, that count as a mention (whole words, any case)",
    "knowledge_search": "members may search the server's knowledge base here (/knowledge search); managing it "
                        "needs Manage Server everywhere",
    "auto_answer": "a help channel (forum or text): each new post gets an answer from the server's knowledge, "
                   "with its sources, when it holds something close enough (else the bot stays silent); in a "
                   "text channel the answer goes to a thread opened from the message",
    "tools": "the functions the chat model may call here: `all` (those the gateway and the bot support), `off`, or "
             f"a comma list of: {', '.join(TOOL_NAMES)} (default: `search_knowledge` alone)",
}


@dataclass(frozen=True, slots=True)
class ConfigReport:
    """``GuildConfig.explain``: effective settings, their sources, every override layer, recent audit rows."""

    config: EffectiveConfig
    sources: dict[str, str]
    layers: dict[int, dict[str, Any]]
    history: list[audit.AuditEntry]


class GuildConfig:
    def __init__(
        self, store: Store, settings: Settings, gateway: Any = None, *, now: Callable[[], datetime] | None = None,
        clock: Callable[[], float] = time.monotonic, cache_seconds: float = CACHE_SECONDS,
        gateways: GatewayDirectory | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        #: the operator's gateway; model lists, checks and default models are the guild's (``gateways``)
        self.gateway = gateway
        self.gateways = gateways if gateways is not None or gateway is None else GatewayDirectory(gateway)
        self.now = now or (lambda: datetime.now(UTC))
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._cache: dict[int, tuple[float, dict[int, dict[str, Any]]]] = {}
        self._changes: dict[int, int] = {}  # guild -> writes made here (a read older than one is not cached)

    # ------------------------------------------------------------------ reads

    async def serving(self, guild_id: int | None) -> Any:
        """The gateway serving ``guild_id`` (its own, else the operator's); None without any gateway. A guild
        gateway that can't be used raises (``GuildGatewayUnavailable``)."""
        if self.gateways is None:
            return self.gateway
        return await self.gateways.for_guild(guild_id)

    def defaults(self, gateway: Any = None) -> EffectiveConfig:
        """The settings nobody changed; the default models are those of ``gateway`` (the operator's
        ``[gateway]`` settings for the operator's or None; a guild gateway's own, bot/gateways/defaults.py)."""
        s = self.settings
        if gateway is not None and is_guild_client(gateway):
            chat_model = default_model(gateway, "chat", s)
            vision_model = default_model(gateway, "vision", s)
            image_model = default_model(gateway, "image", s)
        else:
            chat_model, vision_model, image_model = s.gateway.chat_model, s.gateway.vision_model, s.gateway.image_model
        return EffectiveConfig(
            chat_model=chat_model,
            vision_model=vision_model,  # "" = not configured: the vision feature picks one
            image_model=image_model,
            system_prompt=s.chat.system_prompt,
            temperature=s.chat.temperature,
            max_tokens=s.chat.max_tokens,
            history_messages=s.chat.history_messages,
            answer_mentions=True,
            voice_replies=False,
        )

    async def overrides(self, guild_id: int) -> dict[int, dict[str, Any]]:
        """channel_id (0 = guild level) -> {field: value}; reused for ``cache_seconds`` at most."""
        cached = self._cache.get(guild_id)
        if cached is not None and self.clock() - cached[0] < self.cache_seconds:
            return cached[1]
        changes, read_at = self._changes.get(guild_id, 0), self.clock()
        rows = await self.store.fetchall(
            "SELECT channel_id, field, value FROM config_values WHERE guild_id = ?", (guild_id,)
        )
        layers = _layers(rows)
        if self._changes.get(guild_id, 0) == changes:  # no write of ours finished while we read
            self._cache[guild_id] = (read_at, layers)
        return layers

    def _changed(self, guild_id: int) -> None:
        self._changes[guild_id] = self._changes.get(guild_id, 0) + 1
        self._cache.pop(guild_id, None)

    async def effective(
        self, guild_id: int | None, channel_id: int | None, parent_channel_id: int | None = None, *,
        gateway: Any = None,
    ) -> EffectiveConfig:
        """The settings that apply in this channel (a thread passes its parent as ``parent_channel_id``);
        the default models are those of ``gateway`` (None: the guild's, looked up)."""
        if gateway is None and guild_id and self.gateways is not None:
            try:
                gateway = await self.gateways.for_guild(guild_id)
            except Exception as exc:  # the request itself reports it, when it asks that gateway
                log.info("guild %s: its gateway can't be used for its defaults: %r", guild_id, exc)
        merged: dict[str, Any] = {}
        if guild_id:
            layers = await self.overrides(guild_id)
            for layer in (GUILD_LEVEL, parent_channel_id, channel_id):
                if layer is not None and layer in layers:
                    merged.update(layers[layer])
        base = self.defaults(gateway)
        if not merged:
            return base
        values = {name: merged.get(name, getattr(base, name)) for name in FIELDS}
        values["triggers"] = tuple(values["triggers"])  # stored as a JSON list
        return EffectiveConfig(**values)

    async def explain(self, guild_id: int, channel_id: int | None, parent_channel_id: int | None = None,
                      history: int = 5) -> ConfigReport:
        """What /config show lists: the settings in a channel, where each came from, recent changes."""
        cfg = await self.effective(guild_id, channel_id, parent_channel_id)
        layers = await self.overrides(guild_id)
        sources: dict[str, str] = {}
        for name in FIELDS:
            if name in layers.get(channel_id or -1, {}):
                sources[name] = f"set for <#{channel_id}>"
            elif parent_channel_id is not None and name in layers.get(parent_channel_id, {}):
                sources[name] = f"inherited from <#{parent_channel_id}>"
            elif name in layers.get(GUILD_LEVEL, {}):
                sources[name] = "server setting"
        return ConfigReport(cfg, sources, layers, await audit.recent(self.store, guild_id, history))

    async def model_ids(self, kind: str, current: str = "", guild_id: int | None = None) -> list[str]:
        """Sorted model ids of ``kind`` ("chat" | "vision" | "image") containing ``current`` on the guild's
        gateway (autocomplete)."""
        gateway = await self.serving(guild_id)
        if gateway is None:
            return []
        if kind == "vision":
            models = await gateway.vision_models()
        elif kind == "image":
            models = await gateway.image_models()
        else:
            models = await gateway.list_models()
        return sorted({m.id for m in models if current.lower() in m.id.lower()})

    # ------------------------------------------------------------ validation

    async def validate(self, name: str, value: Any, guild_id: int | None = None) -> Any:
        """Normalise one value or raise ``InvalidSetting`` with the sentence to show the admin (a model is
        checked against the guild's gateway)."""
        if name not in FIELDS:
            raise InvalidSetting(name, f"`{name}` is not a setting; choose one of: {', '.join(FIELDS)}.")
        label = FIELD_LABELS[name]
        if name.endswith("_model"):
            model = str(value).strip()
            if not model:
                raise InvalidSetting(name, f"The {label} must not be empty.")
            if len(model) > MAX_MODEL_NAME:
                raise InvalidSetting(name, f"The {label} name is too long (at most {MAX_MODEL_NAME} characters).")
            await self._check_model(name, model, guild_id)
            return model
        if name == "system_prompt":
            prompt = str(value).strip()
            if not prompt:
                raise InvalidSetting(name, "The system prompt must not be empty (use reset to return to the default).")
            if len(prompt) > MAX_SYSTEM_PROMPT:
                raise InvalidSetting(
                    name, f"The system prompt is {len(prompt):,} characters; the most allowed is {MAX_SYSTEM_PROMPT:,}."
                )
            return prompt
        if name == "temperature":
            temp = _number(name, value)
            if not 0.0 <= temp <= 2.0:
                raise InvalidSetting(name, f"The temperature must be between 0 and 2 (got {temp:g}).")
            return float(temp)
        if name in ("max_tokens", "history_messages"):
            number = _number(name, value)
            top = MAX_TOKENS_CAP if name == "max_tokens" else MAX_HISTORY
            if not math.isfinite(number) or number != int(number) or not 1 <= number <= top:
                raise InvalidSetting(name, f"The {label} must be a whole number from 1 to {top:,} (got {number:g}).")
            return int(number)
        if name == "triggers":
            return parse_triggers(value, field=name)
        if name == "tools":
            try:
                return parse_tools_setting(value)
            except ToolsSettingError as exc:
                raise InvalidSetting(name, f"Tools: {exc}") from None
        if name in ("answer_mentions", "voice_replies", "listen", "auto_thread", "knowledge_search",
                    "auto_answer"):
            if isinstance(value, bool):
                return value
            raise InvalidSetting(name, f"{label.capitalize()} must be true or false.")
        raise InvalidSetting(name, f"`{name}` cannot be set.")  # pragma: no cover

    async def _check_model(self, name: str, model: str, guild_id: int | None = None) -> None:
        if self.gateway is None and self.gateways is None:
            return
        gateway = None
        try:
            gateway = await self.serving(guild_id)
            if name == "vision_model":
                available = [m.id for m in await gateway.vision_models()]
                what = "a vision (image-reading) model"
            elif name == "image_model":
                available = [m.id for m in await gateway.image_models()]
                what = "an image model"
            else:
                models = await gateway.list_models()
                available = [m.id for m in models if str(getattr(m, "kind", "chat")) in ("chat", "vision")]
                what = "a chat model"
        except (AuthenticationError, PermissionDenied) as exc:
            if gateway is None or is_guild_client(gateway):  # the guild's own gateway (or its key) refused
                raise InvalidSetting(name, user_error_message(exc, gateway=gateway)) from None
            log.warning("model list unavailable while validating %s: %s", name, type(exc).__name__)
            raise InvalidSetting(
                name, f"Could not check `{model}` with the AI gateway right now ({type(exc).__name__}); "
                "nothing was changed. Try again shortly."
            ) from None
        except Exception as exc:  # the gateway could not answer: say so, change nothing
            log.warning("model list unavailable while validating %s: %s", name, type(exc).__name__)
            raise InvalidSetting(
                name, f"Could not check `{model}` with the AI gateway right now ({type(exc).__name__}); "
                "nothing was changed. Try again shortly."
            ) from None
        if model not in available:
            shown = ", ".join(f"`{m}`" for m in sorted(available)[:15]) or "none"
            more = f" and {len(available) - 15} more" if len(available) > 15 else ""
            raise InvalidSetting(name, f"`{model}` is not {what} on this gateway. Available: {shown}{more}.")

    # ----------------------------------------------------------------- writes

    async def set_guild(self, guild_id: int, actor_id: int, **values: Any) -> dict[str, tuple[Any, Any]]:
        """Set guild-level values (None removes an override). Returns {field: (old, new)} effective values."""
        return await self._set(guild_id, GUILD_LEVEL, actor_id, values)

    async def set_channel(
        self, guild_id: int, channel_id: int, actor_id: int, **values: Any
    ) -> dict[str, tuple[Any, Any]]:
        """Set a channel's overrides (threads of the channel inherit them)."""
        if not channel_id or channel_id == guild_id:
            raise InvalidSetting("channel", "Choose a channel of this server.")
        return await self._set(guild_id, channel_id, actor_id, values)

    async def _set(self, guild_id: int, channel_id: int, actor_id: int,
                   values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        if not values:
            raise InvalidSetting("fields", "Nothing to change: give at least one setting.")
        clean: dict[str, Any] = {}
        for name, value in values.items():
            clean[name] = None if value is None else await self.validate(name, value, guild_id)
        ts = self.now().timestamp()
        target = "guild" if channel_id == GUILD_LEVEL else f"channel:{channel_id}"

        def body(tx: SyncTx) -> dict[str, tuple[Any, Any]]:
            changes: dict[str, tuple[Any, Any]] = {}
            for name, value in clean.items():
                old = _put(tx, guild_id, channel_id, name, value, ts, actor_id)
                if old != value:
                    audit.add(tx, ts=ts, guild_id=guild_id, actor_id=actor_id, target=target, field=name,
                              old=old, new=value)
                changes[name] = (old, value)
            return changes

        try:
            return await self.store.run(body)
        finally:
            self._changed(guild_id)

    async def reset(
        self,
        guild_id: int,
        actor_id: int,
        *,
        channel_id: int | None = None,
        fields: list[str] | None = None,
        include_channels: bool = False,
    ) -> dict[int, dict[str, Any]]:
        """Remove overrides: the guild level (``channel_id`` None) or one channel; ``fields`` None = all.

        ``include_channels`` also clears every channel's overrides. Returns what was removed, by channel.
        """
        for name in fields or ():
            if name not in FIELDS:
                raise InvalidSetting(name, f"`{name}` is not a setting; choose one of: {', '.join(FIELDS)}.")
        ts = self.now().timestamp()

        def body(tx: SyncTx) -> dict[int, dict[str, Any]]:
            layers = _layers(tx.fetchall(
                "SELECT channel_id, field, value FROM config_values WHERE guild_id = ?" + for_update(tx.dialect),
                (guild_id,),
            ))
            if channel_id is not None:
                targets = [channel_id]
            else:
                targets = [GUILD_LEVEL] + ([c for c in layers if c != GUILD_LEVEL] if include_channels else [])
            removed: dict[int, dict[str, Any]] = {}
            for layer_id in targets:
                for name, old in sorted(layers.get(layer_id, {}).items()):
                    if fields and name not in fields:
                        continue
                    tx.execute(
                        "DELETE FROM config_values WHERE guild_id = ? AND channel_id = ? AND field = ?",
                        (guild_id, layer_id, name),
                    )
                    audit.add(
                        tx, ts=ts, guild_id=guild_id, actor_id=actor_id,
                        target="guild" if layer_id == GUILD_LEVEL else f"channel:{layer_id}",
                        field=name, old=old, new=None,
                    )
                    removed.setdefault(layer_id, {})[name] = old
            return removed

        try:
            return await self.store.run(body)
        finally:
            self._changed(guild_id)


def _layers(rows: Any) -> dict[int, dict[str, Any]]:
    """``config_values`` rows (channel_id, field, value) → channel_id → {field: value}."""
    layers: dict[int, dict[str, Any]] = {}
    for channel_id, name, value in rows:
        if name in FIELDS:
            layers.setdefault(int(channel_id), {})[name] = json.loads(value)
    return layers


def _put(tx: SyncTx, guild_id: int, channel_id: int, name: str, value: Any, ts: float, actor_id: int) -> Any:
    """Set (``value`` None: remove) one override; return the value it replaced, read under the row's lock.

    A new row is inserted only if none exists (another process may insert it at the same moment: then
    the insert does nothing and that row is locked, read and updated instead).
    """
    key = (guild_id, channel_id, name)
    if value is None:
        old = tx.fetchval(
            "DELETE FROM config_values WHERE guild_id = ? AND channel_id = ? AND field = ? RETURNING value", key
        )
        return None if old is None else json.loads(old)
    encoded = json.dumps(value)
    inserted = tx.execute(
        "INSERT INTO config_values(guild_id, channel_id, field, value, updated_at, updated_by)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, channel_id, field) DO NOTHING",
        (*key, encoded, float(ts), actor_id),
    )
    if inserted:
        return None
    old = tx.fetchval(
        "SELECT value FROM config_values WHERE guild_id = ? AND channel_id = ? AND field = ?"
        + for_update(tx.dialect), key,
    )
    tx.execute(
        "UPDATE config_values SET value = ?, updated_at = ?, updated_by = ?"
        " WHERE guild_id = ? AND channel_id = ? AND field = ?",
        (encoded, float(ts), actor_id, *key),
    )
    return None if old is None else json.loads(old)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidSetting(name, f"The {FIELD_LABELS[name]} must be a number.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidSetting(name, f"The {FIELD_LABELS[name]} must be a number (got {value!r}).") from None
