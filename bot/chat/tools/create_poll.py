"""``create_poll(question, answers, hours)``: a Discord poll in the turn's channel (``discord.Poll``)."""

from __future__ import annotations

import datetime
from typing import Any

import discord

from bot.chat.tools.base import ToolContext, ToolRefused, ToolResult
from bot.rendering.replies import NO_MENTIONS
from bot.rendering.text import truncate

__all__ = ["CreatePoll"]

#: Discord's limits: 300 characters a question (and an answer), 10 answers, 1 hour to 32 days
QUESTION_MAX = 300
ANSWER_MAX = 55
ANSWERS_MAX = 10
HOURS_MAX = 768


class CreatePoll:
    name = "create_poll"
    description = "Post a poll in this channel for its members to vote on."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "question": {"type": "string", "minLength": 1, "maxLength": QUESTION_MAX},
            "answers": {"type": "array", "minItems": 2, "maxItems": ANSWERS_MAX, "uniqueItems": True,
                        "items": {"type": "string", "minLength": 1, "maxLength": ANSWER_MAX}},
            "hours": {"type": "integer", "minimum": 1, "maximum": HOURS_MAX,
                      "description": "How long the poll stays open, in hours"},
        },
        "required": ["question", "answers", "hours"],
        "additionalProperties": False,
    }

    def unavailable(self, gateway: Any = None) -> str | None:
        return None

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        channel = ctx.channel
        if ctx.guild is None or not isinstance(channel, (discord.TextChannel, discord.Thread)):
            raise ToolRefused("Polls can only be posted in a server's text channel or thread.")
        me = ctx.guild.me
        if me is not None and not channel.permissions_for(me).send_polls:
            raise ToolRefused("I'm not allowed to post polls in this channel (Send Polls).")
        if hasattr(ctx.member, "guild") and not channel.permissions_for(ctx.member).send_polls:
            raise ToolRefused("The member who asked may not post polls in this channel.")
        question = " ".join(str(args["question"]).split())
        poll = discord.Poll(question=question, duration=datetime.timedelta(hours=int(args["hours"])))
        for answer in args["answers"]:
            poll.add_answer(text=" ".join(str(answer).split()))
        try:
            message = await channel.send(poll=poll, allowed_mentions=NO_MENTIONS)
        except discord.Forbidden:
            raise ToolRefused("Discord did not let me post a poll in this channel.") from None
        return ToolResult(f"The poll was posted in the channel (message {message.jump_url}); members can vote "
                          f"for {args['hours']} hour(s).", f"posted a poll: “{truncate(question, 60)}”")
