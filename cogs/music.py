"""/music prompt [model] [duration]: Discord input → ``bot.media_jobs`` (the music runner) → replies.

Registered only when the gateway makes music (``bot.media_jobs.supports("music")``). The service runs
the job (budget in music seconds, the [media] queue, the call, the audio attachment, its buttons);
refusals are private.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.media.music_kind import MusicOptions
from bot.rendering.replies import reply_privately
from bot.rendering.user_facing import UserFacingError
from cogs._model_choices import media_autocomplete

log = logging.getLogger(__name__)

#: Discord caps an integer option; the service refuses past ``[media] max_music_seconds`` with the range
MAX_DURATION_OPTION = 3600


class Music(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.service = bot.media_jobs

    @app_commands.command(name="music", description="Compose music from a text prompt")
    @app_commands.describe(
        prompt="What the music should sound like",
        model="Music model (default: the gateway's)",
        duration="Length in seconds",
    )
    @app_commands.autocomplete(model=media_autocomplete("music"))
    async def music(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 4000],
        model: str | None = None,
        duration: app_commands.Range[int, 1, MAX_DURATION_OPTION] | None = None,
    ) -> None:
        opts = MusicOptions(prompt=prompt, model=model, duration=duration)
        try:
            request = await self.service.prepare_music(opts, guild_id=interaction.guild_id,
                                                       channel_id=interaction.channel_id)
            await self.service.submit(interaction, request, origin="command")
        except UserFacingError as exc:
            await reply_privately(interaction, exc.user_message())


async def setup(bot: GatecordBot) -> None:
    if bot.media_jobs.supports("music"):
        await bot.add_cog(Music(bot))
