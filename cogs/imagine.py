"""/imagine and its buttons: Discord input → ``bot.image_jobs`` (the image job service) → replies.

The service runs the job (budget, queue, gateway, progress, grid, recovery after a restart); this
cog turns the command's options and button presses into service calls and refusals into ephemeral
replies, and posts what a U button or a delete asks for.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.media.buttons import ImagineButton
from bot.media.grid import ImageTooLarge
from bot.media.jobs import ImageJob
from bot.media.options import ImagineOptions
from bot.media.presenter import upload_limit
from bot.rendering import limits as discord_limits
from bot.rendering.errors import describe_error
from bot.rendering.replies import NO_MENTIONS, reply_privately
from bot.rendering.user_facing import UserFacingError
from gateway_client import GatewayError

log = logging.getLogger(__name__)


class Imagine(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.service = bot.image_jobs

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ImagineButton)
        self.service.buttons = self

    async def cog_unload(self) -> None:
        """Jobs keep running in the service; only the buttons stop answering until the cog is back."""
        self.bot.remove_dynamic_items(ImagineButton)
        if self.service.buttons is self:
            self.service.buttons = None

    # -- /imagine -------------------------------------------------------------------------------

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
        matches = await self.service.model_choices(current)
        return [
            app_commands.Choice(name=m[: discord_limits.CHOICE_NAME], value=m)
            for m in matches
            if len(m) <= discord_limits.CHOICE_VALUE
        ][: discord_limits.AUTOCOMPLETE_CHOICES]

    # -- buttons (ImagineButton routes presses here through the service) ----------------------------

    async def handle_button(
        self, interaction: discord.Interaction, action: str, job_id: int, index: int | None
    ) -> None:
        try:
            job = await self.service.job(job_id)
            if action == "u":
                await self._upscale(interaction, job, index or 1)
            elif action == "delete":
                await self._delete(interaction, job)
            else:
                await self.service.regenerate(interaction, job, action, index)
        except GatewayError as exc:  # the stored options no longer pass the gateway's rules
            await reply_privately(interaction, await describe_error(exc))
        except UserFacingError as exc:
            await reply_privately(interaction, exc.user_message())

    async def _upscale(self, interaction: discord.Interaction, job: ImageJob, index: int) -> None:
        """Image ``index`` alone at full size (downscaled/re-encoded only when over the upload limit)."""
        found = await self.service.stored_image(job, index)
        await interaction.response.defer(thinking=True)
        try:
            content, file = await self.service.single_image(job, found, upload_limit(interaction))
        except (ImageTooLarge, ValueError) as exc:
            await interaction.followup.send(f"Image {index} could not be prepared for upload: {exc}.",
                                            allowed_mentions=NO_MENTIONS)
            return
        await interaction.followup.send(content, file=file, allowed_mentions=NO_MENTIONS)

    async def _delete(self, interaction: discord.Interaction, job: ImageJob) -> None:
        self.service.check_delete(job, interaction.user.id, interaction.permissions)
        await interaction.response.defer()
        await self.service.delete(job)
        try:
            await interaction.delete_original_response()
        except discord.NotFound:
            pass



async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Imagine(bot))
