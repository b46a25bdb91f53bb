"""/imagine: Discord input → ``bot.media_jobs`` (the media-job service) → replies.

The service runs the job (budget, queue, gateway, progress, grid, recovery after a restart); this
cog turns the command's options into service calls and refusals into ephemeral replies. The job's
buttons are answered by cogs/media_buttons.py.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.app.installs import guest_media_refusal, is_guest
from bot.media.options import ImagineOptions
from bot.rendering import limits as discord_limits
from bot.rendering.replies import reply_privately
from bot.rendering.user_facing import UserFacingError
from cogs._installs import everywhere

log = logging.getLogger(__name__)


class Imagine(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.service = bot.media_jobs

    # -- /imagine -------------------------------------------------------------------------------

    @everywhere
    @app_commands.command(name="imagine", description="Generate images from a text prompt")
    @app_commands.describe(
        prompt="What to draw",
        model="Image model (default: this server's)",
        count="How many images, 1–4",
        steps="Generation steps (FLUX: 1–4)",
        seed="Seed for reproducible results",
        size="WIDTHxHEIGHT, e.g. 1024x1024 (or give width and height)",
        width="Width in pixels (FLUX: a multiple of 16)",
        height="Height in pixels (FLUX: a multiple of 32)",
        negative_prompt="What the image should not show",
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 4000],
        model: str | None = None,
        count: int | None = None,
        steps: int | None = None,
        seed: int | None = None,
        size: str | None = None,
        width: int | None = None,
        height: int | None = None,
        negative_prompt: str | None = None,
    ) -> None:
        if is_guest(interaction):  # the job's messages go through the channel, which the bot can't reach here
            await reply_privately(interaction, guest_media_refusal("imagine"))
            return
        opts = ImagineOptions(prompt=prompt, model=model, count=count, steps=steps, seed=seed, size=size,
                              width=width, height=height, negative_prompt=negative_prompt)
        channel = interaction.channel
        parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
        try:
            request = await self.service.prepare(opts, guild_id=interaction.guild_id,
                                                 channel_id=interaction.channel_id, parent_channel_id=parent_id)
            await self.service.submit(interaction, request, origin="command")
        except UserFacingError as exc:
            await reply_privately(interaction, exc.user_message())

    @imagine.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        matches = await self.service.model_choices("image", current)
        return [
            app_commands.Choice(name=m[: discord_limits.CHOICE_NAME], value=m)
            for m in matches
            if len(m) <= discord_limits.CHOICE_VALUE
        ][: discord_limits.AUTOCOMPLETE_CHOICES]


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Imagine(bot))
