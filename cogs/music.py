"""/music prompt [model] [duration]: Discord input → ``bot.media_jobs`` (the music runner) → replies.

A global command when the operator's gateway makes music, and a guild command of each server whose own
gateway does (``bot.guild_commands``); a server whose gateway lacks it is told so. The service runs
the job (budget in music seconds, the [media] queue, the call, the audio attachment, its buttons);
refusals are private.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.app.installs import guest_media_refusal, is_guest
from bot.media.music_kind import MusicOptions
from bot.rendering import limits as discord_limits
from bot.rendering.replies import reply_privately
from bot.rendering.user_facing import UserFacingError
from cogs._installs import everywhere

log = logging.getLogger(__name__)

#: Discord caps an integer option; the service refuses past ``[media] max_music_seconds`` with the range
MAX_DURATION_OPTION = 3600


class Music(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.service = bot.media_jobs

    @everywhere
    @app_commands.command(name="music", description="Compose music from a text prompt")
    @app_commands.describe(
        prompt="What the music should sound like",
        model="Music model (default: the gateway's)",
        duration="Length in seconds",
    )
    async def music(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 4000],
        model: str | None = None,
        duration: app_commands.Range[int, 1, MAX_DURATION_OPTION] | None = None,
    ) -> None:
        if is_guest(interaction):  # the job's messages go through the channel, which the bot can't reach here
            await reply_privately(interaction, guest_media_refusal("music"))
            return
        opts = MusicOptions(prompt=prompt, model=model, duration=duration)
        try:
            request = await self.service.prepare_music(opts, guild_id=interaction.guild_id,
                                                       channel_id=interaction.channel_id)
            await self.service.submit(interaction, request, origin="command")
        except UserFacingError as exc:
            await reply_privately(interaction, exc.user_message(), cause=exc)

    @music.autocomplete("model")
    async def _model_autocomplete(self, interaction: discord.Interaction,
                                  current: str) -> list[app_commands.Choice[str]]:
        """The music models of the gateway serving this server."""
        matches = await self.service.model_choices("music", current, interaction.guild_id)
        return [
            app_commands.Choice(name=m[: discord_limits.CHOICE_NAME], value=m)
            for m in matches
            if len(m) <= discord_limits.CHOICE_VALUE
        ][: discord_limits.AUTOCOMPLETE_CHOICES]


async def setup(bot: GatecordBot) -> None:
    cog = Music(bot)
    await bot.add_cog(cog)
    # global where the operator's gateway makes music; else only for servers whose own gateway does
    bot.guild_commands.offer(
        "music", lambda gateway: [cog.music] if bot.media_jobs.supports("music", gateway) else [], every=[cog.music])
