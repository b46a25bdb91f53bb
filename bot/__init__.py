"""Gatecord: the bot process (settings, factory, storage, web server, rendering for Discord)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.app.factory import GatecordBot, create_bot

__all__ = ["GatecordBot", "create_bot"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `gatecord check`/`migrate` and config errors do not import discord.py first.
    if name in __all__:
        from bot.app import factory

        return getattr(factory, name)
    raise AttributeError(name)
