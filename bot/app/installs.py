"""Where Gatecord is installed: in a server (guild install, the bot is a member) or on a member's own
account (user install: its commands work in DMs, group DMs and any server, even one the bot is not in).

``is_guest``: an interaction from a place the bot cannot reach — a server where only the member
installed the app, or a group DM. There Gatecord has the interaction and nothing else: it answers
through the interaction's webhook only (the response and at most ``GUEST_FOLLOWUPS`` follow-ups,
Discord's limit), and never calls a channel or guild endpoint (Discord answers 403 Missing Access).
``install_links``: the two OAuth2 links ``gatecord check`` and the README give.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode

import discord

from bot.budgets.rules import guild_pays

__all__ = [
    "GUEST_FOLLOWUPS",
    "GUILD_PERMISSIONS",
    "application_id_from_token",
    "guest_media_refusal",
    "install_links",
    "is_dm",
    "is_guest",
]

#: follow-up messages Discord allows an interaction from a server the app is not in (the 6th: 40094)
GUEST_FOLLOWUPS = 5

#: what the bot needs in a server (the guild install link asks for these)
GUILD_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True, create_public_threads=True,
    embed_links=True, attach_files=True, read_message_history=True, manage_webhooks=True,
    send_voice_messages=True,
)
AUTHORIZE_URL = "https://discord.com/oauth2/authorize"


def is_guest(interaction: Any) -> bool:
    """True when the bot can't reach where ``interaction`` happened: a group DM (context 2), or a server
    that did not install the app (a user install; or one missing from the bot's cache). A DM with the bot
    is reachable."""
    context = getattr(interaction, "context", None)
    if isinstance(context, discord.app_commands.AppCommandContext) and context.private_channel:
        return True
    guild_id = interaction.guild_id
    if guild_id is None:
        return False
    if not guild_pays(interaction):
        return True
    get_guild = getattr(getattr(interaction, "client", None), "get_guild", None)
    return get_guild is not None and get_guild(guild_id) is None


def is_dm(interaction: Any) -> bool:
    """The interaction happened in the member's DM with the bot (context 1)."""
    if interaction.guild_id is not None:
        return False
    context = getattr(interaction, "context", None)
    if isinstance(context, discord.app_commands.AppCommandContext) and (context.dm_channel or context.guild):
        return context.dm_channel
    return isinstance(getattr(interaction, "channel", None), discord.DMChannel)


def application_id_from_token(token: str) -> int | None:
    """The application's id, read from a bot token's first part (the bot user's id in base64, which
    is the application's id); None when the token doesn't look like one. The id is public; nothing
    else of the token is read."""
    head = token.strip().split(".", 1)[0]
    if not head:
        return None
    try:
        decoded = base64.b64decode(head + "=" * (-len(head) % 4), validate=False).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(decoded) if decoded.isdigit() and 15 <= len(decoded) <= 21 else None


def install_links(application_id: int | str) -> tuple[str, str]:
    """(guild install, user install): a server's admin adds the bot with its permissions; a member adds
    Gatecord's commands to their own account (``integration_type=1``, ``applications.commands`` only)."""
    guild = urlencode({"client_id": application_id, "permissions": GUILD_PERMISSIONS.value,
                       "integration_type": 0, "scope": "bot applications.commands"})
    user = urlencode({"client_id": application_id, "integration_type": 1, "scope": "applications.commands"})
    return f"{AUTHORIZE_URL}?{guild}", f"{AUTHORIZE_URL}?{user}"


def guest_media_refusal(command: str) -> str:
    """Why a media job can't run where the bot is only a guest (its progress message is edited, and its
    result posted, through the channel once the interaction's 15 minutes are over, or after a restart)."""
    return (f"`/{command}` needs Gatecord to be in this conversation: its progress and result are posted and "
            "updated in the channel, which Gatecord can't reach here (only you installed it). Use it in a server "
            "that added Gatecord, or in your DM with Gatecord.")
