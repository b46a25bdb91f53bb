"""The buttons of every media job (images, edits, video, music): one restart-proof ``ImagineButton``
(bot/media/buttons.py) whose presses land here and are routed by action and the job's kind.

U-n posts one image of a grid; V-n, Re-roll and Retry make a new job (``bot.media_jobs.regenerate``);
Delete removes a finished job and its message; Cancel stops a job in progress (its requester or an
admin). Refusals are private.
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.media.buttons import ImagineButton
from bot.media.grid import ImageTooLarge
from bot.media.jobs import MediaJob
from bot.media.presenter import upload_limit
from bot.rendering.errors import describe_error
from bot.rendering.replies import NO_MENTIONS, reply_privately
from bot.rendering.user_facing import UserFacingError
from gateway_client import GatewayError

log = logging.getLogger(__name__)

#: kinds whose result is a grid of images (U-n, V-n)
GRID_KINDS = ("image", "edit")


class MediaButtons(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.service = bot.media_jobs

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ImagineButton)
        self.service.buttons = self

    async def cog_unload(self) -> None:
        """Jobs keep running in the service; only the buttons stop answering until the cog is back."""
        self.bot.remove_dynamic_items(ImagineButton)
        if self.service.buttons is self:
            self.service.buttons = None

    async def handle_button(
        self, interaction: discord.Interaction, action: str, job_id: int, index: int | None
    ) -> None:
        try:
            job = await self.service.job(job_id)
            if action == "u" and job.kind in GRID_KINDS:
                await self._upscale(interaction, job, index or 1)
            elif action == "delete":
                await self._delete(interaction, job)
            elif action == "cancel":
                await self._cancel(interaction, job)
            elif action in ("v", "reroll", "retry"):
                await self.service.regenerate(interaction, job, action, index)
            else:
                await reply_privately(interaction, "This button does nothing for this job.")
        except GatewayError as exc:  # the stored options no longer pass the gateway's rules, or a cancel failed
            await reply_privately(interaction, await describe_error(exc))
        except UserFacingError as exc:
            await reply_privately(interaction, exc.user_message(), cause=exc)

    async def _upscale(self, interaction: discord.Interaction, job: MediaJob, index: int) -> None:
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

    async def _delete(self, interaction: discord.Interaction, job: MediaJob) -> None:
        self.service.check_delete(job, interaction.user.id, interaction.permissions)
        await interaction.response.defer()
        await self.service.delete(job)
        try:
            await interaction.delete_original_response()
        except discord.NotFound:
            pass

    async def _cancel(self, interaction: discord.Interaction, job: MediaJob) -> None:
        """The job's message says who cancelled it and what was charged (edited by the service)."""
        self.service.check_cancel(job, interaction.user.id, interaction.permissions)
        await interaction.response.defer()
        await self.service.cancel(job, interaction.user.id, interaction.permissions)


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(MediaButtons(bot))
