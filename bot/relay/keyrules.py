"""Rules for making a relay key: its expiry (``expires:30d``) and the channels it may reach.

A key never reaches further than the admin who made it: without a channel list it is scoped to the
channels its creator could post in at that moment (discord.py's public ``permissions_for``), stored
with the key; a listed channel the creator cannot post in is refused. Channels created later, or
opened to the creator later, are not added: make a new key for them.
"""

from __future__ import annotations

import re

import discord

EXPIRY_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}
EXPIRY_MAX = 3650 * 86400  # ten years
_EXPIRY_RE = re.compile(r"^\s*(\d{1,6})\s*([hdw])\s*$", re.IGNORECASE)
POSTABLE_TYPES = (discord.TextChannel, discord.VoiceChannel, discord.StageChannel)


class BadExpiry(ValueError):
    """``expires`` is not a number of hours, days or weeks (the message says what is accepted)."""


def parse_expiry(text: str) -> int:
    """Seconds in ``1h``, ``7d``, ``30d``, ``2w`` (case-insensitive); ``BadExpiry`` otherwise."""
    match = _EXPIRY_RE.match(text)
    shown = text.strip()[:40]
    if match is None:
        raise BadExpiry(
            f"`expires` must be a number followed by h (hours), d (days) or w (weeks), e.g. 1h, 7d or 30d "
            f"(got `{shown}`)"
        )
    seconds = int(match.group(1)) * EXPIRY_UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise BadExpiry(f"`expires` must be at least 1h (got `{shown}`)")
    if seconds > EXPIRY_MAX:
        raise BadExpiry(f"`expires` must be at most 3650d (got `{shown}`); leave it out for a key that never expires")
    return seconds


def can_post(channel: discord.abc.GuildChannel | discord.Thread, member: discord.Member) -> bool:
    """``member`` may see ``channel`` and send messages there (in a thread: send in threads)."""
    perms = channel.permissions_for(member)
    if isinstance(channel, discord.Thread):
        return perms.view_channel and perms.send_messages_in_threads
    return perms.view_channel and perms.send_messages


def postable_channels(guild: discord.Guild, member: discord.Member) -> list[int]:
    """The guild's text, voice and stage channels ``member`` can post in now (threads follow their parent)."""
    return [
        channel.id for channel in guild.channels
        if isinstance(channel, POSTABLE_TYPES) and can_post(channel, member)
    ]
