"""Vision: ``/vision`` and the "Describe image" message command.

A Discord adapter only: options in → ``bot.vision`` (bot/vision/service.py owns the question) →
Discord out. Images in mentions and replies are chat turns (bot/chat/service.py).
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.chat.admission import Busy
from bot.rendering.replies import reply_privately
from bot.vision.inputs import DEFAULT_PROMPT, image_links
from bot.vision.service import VisionQuestion
from cogs._installs import everywhere
from cogs._model_choices import VISION_KINDS, autocomplete_for

DESCRIBE_IMAGE = "Describe image"


class Vision(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.describe_menu = everywhere(app_commands.ContextMenu(name=DESCRIBE_IMAGE, callback=self.describe_image))

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.describe_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.describe_menu.name, type=self.describe_menu.type)

    @everywhere
    @app_commands.command(name="vision", description="Ask the AI about an image")
    @app_commands.describe(
        image="The picture (PNG, JPEG, WebP, still GIF or BMP)",
        prompt="What you want to know about it (default: describe it)",
        model="Model to use (default: this channel's vision model)",
    )
    @app_commands.autocomplete(model=autocomplete_for(VISION_KINDS))
    async def vision(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 4000] | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        await self._ask(interaction, VisionQuestion([image], (), prompt or DEFAULT_PROMPT, model, chosen=True))

    async def describe_image(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The message command: describe the pictures attached to the chosen message."""
        await self._ask(interaction, VisionQuestion(list(message.attachments), image_links(message)))

    async def _ask(self, interaction: discord.Interaction, question: VisionQuestion) -> None:
        try:
            ticket = self.bot.vision.admit()
        except Busy as exc:
            await reply_privately(interaction, exc.user_message())
            return
        try:
            await interaction.response.defer(thinking=True)
        except BaseException:
            ticket.cancel()
            raise
        await self.bot.vision.answer_interaction(interaction, ticket, question)


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Vision(bot))
