"""Auto-answer in help channels: new posts in to ``bot.auto_answer`` (bot/auto_answer/service.py), and the
**Solved** / **Not helpful** presses out to the feedback message. Refusals are private."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.auto_answer.buttons import OutcomeButton, outcome_view
from bot.auto_answer.outcomes import Outcome
from bot.auto_answer.service import marked_text
from bot.rendering.replies import NO_MENTIONS, reply_privately
from bot.rendering.user_facing import UserFacingError

log = logging.getLogger(__name__)


class AutoAnswer(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.service = bot.auto_answer

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(OutcomeButton)
        self.service.buttons = self

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(OutcomeButton)
        if self.service.buttons is self:
            self.service.buttons = None

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if self.bot.user is not None:
            await self.service.on_message(message, self.bot.user)

    async def handle_outcome(self, interaction: discord.Interaction, answer_id: int, outcome: Outcome) -> None:
        try:
            await self.service.decide(answer_id, outcome, user_id=interaction.user.id,
                                      permissions=interaction.permissions)
        except UserFacingError as exc:
            await reply_privately(interaction, exc.user_message())
            return
        content = interaction.message.content if interaction.message is not None else ""
        await interaction.response.edit_message(content=marked_text(content, outcome, interaction.user.id),
                                                view=outcome_view(answer_id, outcome), allowed_mentions=NO_MENTIONS)


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(AutoAnswer(bot))
