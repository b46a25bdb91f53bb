"""``read_channel(limit)``: the recent messages of the turn's channel — only that channel, and only when
the member who asked may read its history there (the model never names a channel)."""

from __future__ import annotations

from typing import Any

import discord

from bot.chat.tools.base import ToolContext, ToolRefused, ToolResult
from bot.rendering.text import truncate

__all__ = ["ReadChannel"]

LIMIT_MAX = 50
#: characters of one message given to the model
MESSAGE_CHARS = 500


def may_read(channel: Any, who: Any) -> bool:
    """Whether ``who`` (a member; or the bot) can see ``channel`` and read its history."""
    if isinstance(channel, (discord.DMChannel, discord.GroupChannel)):
        return True
    if not isinstance(who, discord.Member):
        return False
    perms = channel.permissions_for(who)
    return bool(perms.view_channel and perms.read_message_history)


class ReadChannel:
    name = "read_channel"
    description = ("Read the most recent messages of the channel this conversation is in (never another "
                   "channel), oldest first.")
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX,
                                 "description": "How many recent messages to read"}},
        "required": ["limit"],
        "additionalProperties": False,
    }

    def unavailable(self, gateway: Any = None) -> str | None:
        return None

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        channel: Any = ctx.channel
        if not isinstance(ctx.channel, discord.abc.Messageable):
            raise ToolRefused("There is no channel history to read here.")
        if not may_read(channel, ctx.member):
            raise ToolRefused("The member who asked may not read this channel's history.")
        if ctx.guild is not None and not may_read(channel, ctx.guild.me):
            raise ToolRefused("I'm not allowed to read this channel's history (Read Message History).")
        before = discord.Object(ctx.prompt_message_id) if ctx.prompt_message_id else None
        limit = int(args["limit"])
        try:
            found = [m async for m in channel.history(limit=limit, before=before)]
        except discord.Forbidden:
            raise ToolRefused("Discord did not let me read this channel's history.") from None
        own = set(ctx.answer_message_ids())  # the answer being written is not part of the conversation
        found = [m for m in found if m.channel.id == channel.id and m.id not in own]  # this channel only
        found.reverse()
        lines = []
        for m in found:
            text = m.clean_content or ("(attachments: " + ", ".join(a.filename for a in m.attachments) + ")"
                                       if m.attachments else "(no text)")
            name = getattr(m.author, "display_name", m.author.name)
            lines.append(f"{m.created_at:%Y-%m-%d %H:%M} {name}: {truncate(' '.join(text.split()), MESSAGE_CHARS)}")
        where = f"#{channel.name}" if getattr(channel, "name", None) else "this conversation"
        content = "\n".join(lines) if lines else "The channel has no earlier messages."
        return ToolResult(content, f"read the last {len(lines)} message(s) of {where}")
