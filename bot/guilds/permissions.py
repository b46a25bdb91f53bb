"""Who may run the server-admin commands (``/config``, ``/quota``, ``/relay`` …): Manage Server."""

from __future__ import annotations

import discord
from discord import app_commands

__all__ = ["ADMIN_PERMISSIONS", "NotServerAdmin", "require_server_admin"]

#: the default member permission of admin commands (hidden from everyone else)
ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)


class NotServerAdmin(app_commands.CheckFailure):
    """The member lacks Manage Server (the command was sent despite being hidden)."""


def require_server_admin(interaction: discord.Interaction) -> bool:
    """An app-command check: in a server, by a member with Manage Server."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    if not interaction.permissions.manage_guild:
        raise NotServerAdmin()
    return True
