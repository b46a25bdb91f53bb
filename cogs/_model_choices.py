"""Model autocomplete shared by every command with a ``model`` option (chat, vision, imagine, admin).

``model_choices(gateway, current, kind=...)`` returns at most 25 ``Choice`` objects filtered by what
the member typed; ``autocomplete_for(kind)`` gives a ready callback for ``@command.autocomplete``.
The gateway client caches its model list; a slow list answers with no choices rather than missing
Discord's 3-second deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import discord
from discord import app_commands

from bot.budgets.rules import Requester
from bot.rendering import limits as limits
from gateway_client import GatewayClient, ModelInfo, ModelKind

log = logging.getLogger(__name__)

__all__ = ["CHAT_KINDS", "VISION_KINDS", "IMAGE_KINDS", "autocomplete_for", "filter_models", "gateway_for",
           "last_gateway_for", "media_autocomplete", "model_choices"]

CHAT_KINDS: tuple[ModelKind, ...] = (ModelKind.CHAT, ModelKind.VISION)
VISION_KINDS: tuple[ModelKind, ...] = (ModelKind.VISION,)
IMAGE_KINDS: tuple[ModelKind, ...] = (ModelKind.IMAGE,)
LIST_TIMEOUT = 2.0


def _guild_of(interaction: discord.Interaction) -> int | None:
    """The guild whose gateway serves this interaction (None: a DM or a user install: the operator's)."""
    return Requester.from_interaction(interaction).guild_id


async def gateway_for(interaction: discord.Interaction) -> GatewayClient:
    """The gateway serving the interaction's guild (``bot.gateways.for_guild``); may raise
    ``GuildGatewayUnavailable``."""
    client: Any = interaction.client
    return await client.gateways.for_guild(_guild_of(interaction))


def last_gateway_for(interaction: discord.Interaction) -> GatewayClient:
    """The gateway last seen serving the interaction's guild, without I/O (for wording an error)."""
    client: Any = interaction.client
    return client.gateways.peek(_guild_of(interaction))


async def models_of_kind(gateway: Any, kinds: Sequence[ModelKind]) -> list[ModelInfo]:
    """The gateway's models whose kind is one of ``kinds`` (vision/image lists include configured ones)."""
    if tuple(kinds) == VISION_KINDS:
        return list(await gateway.vision_models())
    if tuple(kinds) == IMAGE_KINDS:
        return list(await gateway.image_models())
    return [m for m in await gateway.list_models() if m.kind in kinds]


def _label(m: ModelInfo) -> str:
    extra = []
    if m.provider and m.provider.lower() not in m.id.lower():
        extra.append(m.provider)
    if m.context_window:
        extra.append(f"{m.context_window // 1000}k ctx" if m.context_window >= 1000 else f"{m.context_window} ctx")
    if m.kind is ModelKind.VISION:
        extra.append("sees images")
    text = m.id + (f" ({', '.join(extra)})" if extra else "")
    return text[: limits.CHOICE_NAME]


def filter_models(models: Iterable[ModelInfo], current: str,
                  limit: int = limits.AUTOCOMPLETE_CHOICES) -> list[ModelInfo]:
    """Models matching ``current`` (case-insensitive): prefix matches of the id or its last part first."""
    needle = current.strip().lower()
    scored: list[tuple[int, str, ModelInfo]] = []
    for m in models:
        mid = m.id.lower()
        if len(m.id) > limits.CHOICE_VALUE:
            continue  # cannot be a choice value
        tail = mid.rsplit("/", 1)[-1]
        name = (m.name or "").lower()
        if not needle:
            rank = 2
        elif mid.startswith(needle) or tail.startswith(needle):
            rank = 0
        elif needle in mid or (name and needle in name):
            rank = 1
        else:
            continue
        scored.append((rank, mid, m))
    scored.sort(key=lambda item: (item[0], item[1]))
    return [m for _, _, m in scored[:limit]]


async def model_choices(
    gateway: Any, current: str, *, kinds: Sequence[ModelKind] = CHAT_KINDS
) -> list[app_commands.Choice[str]]:
    """At most 25 choices for a ``model`` option: the models of ``kinds`` matching ``current``."""
    try:
        models = await asyncio.wait_for(models_of_kind(gateway, kinds), timeout=LIST_TIMEOUT)
    except Exception as exc:  # autocomplete must answer; an empty list is an answer
        log.info("model list unavailable for autocomplete: %r", exc)
        return []
    return [app_commands.Choice(name=_label(m), value=m.id) for m in filter_models(models, current)]


def autocomplete_for(
    kinds: Sequence[ModelKind] = CHAT_KINDS,
) -> Callable[[discord.Interaction, str], Coroutine[Any, Any, list[app_commands.Choice[str]]]]:
    """An autocomplete callback: ``@app_commands.autocomplete(model=autocomplete_for(VISION_KINDS))``."""

    async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        try:  # the guild's own gateway lists its own models
            gateway = await asyncio.wait_for(gateway_for(interaction), timeout=LIST_TIMEOUT)
        except Exception as exc:
            log.info("no gateway for autocomplete: %r", exc)
            return []
        return await model_choices(gateway, current, kinds=kinds)

    return complete


def media_autocomplete(
    kind: str,
) -> Callable[[discord.Interaction, str], Coroutine[Any, Any, list[app_commands.Choice[str]]]]:
    """``@app_commands.autocomplete(model=media_autocomplete("music"))`` for a media-job kind ("image",
    "edit", "video", "music"): the gateway's models of that kind, through ``bot.media_jobs.model_choices``."""

    async def callback(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        service = getattr(interaction.client, "media_jobs", None)
        matches: list[str] = await service.model_choices(kind, current) if service is not None else []
        return [
            app_commands.Choice(name=m[: limits.CHOICE_NAME], value=m)
            for m in matches
            if len(m) <= limits.CHOICE_VALUE
        ][: limits.AUTOCOMPLETE_CHOICES]

    return callback
