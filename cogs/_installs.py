"""Where a member command is offered: in servers, in DMs with the bot and in group DMs, for a server's
install and a member's own (user) install. Admin commands keep the tree's default (bot/app/factory.py:
a server's install, in a server only)."""

from __future__ import annotations

from typing import TypeVar

from discord import app_commands

T = TypeVar("T")

__all__ = ["everywhere"]


def everywhere(command: T) -> T:
    """Offer ``command`` (a callback, a ``Command``, a ``ContextMenu``) everywhere Discord allows it."""
    command = app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)(command)
    return app_commands.allowed_installs(guilds=True, users=True)(command)
