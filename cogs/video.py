"""/video: Discord input → ``bot.media_jobs`` (the media job service) → replies.

The service runs the job (budget, queue, the gateway's asynchronous job, progress, the MP4 or its
link, recovery after a restart: bot/media/video_kind.py); this cog turns the command's options into
service calls and refusals (options, budget, limits) into private replies. /video is a global command
when the operator's gateway makes video, and a guild command of each server whose own gateway does
(``bot.guild_commands``); a server whose gateway lacks it is told so privately. Its buttons (Cancel,
Re-roll, Delete) are the media jobs' restart-proof buttons, answered wherever the service routes them.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.app.installs import guest_media_refusal, is_guest
from bot.media.video_options import VideoOptions
from bot.rendering import limits as discord_limits
from bot.rendering.replies import reply_privately
from bot.rendering.user_facing import UserFacingError
from cogs._installs import everywhere

log = logging.getLogger(__name__)

#: Discord's longest string option
PROMPT_MAX_CHARS = 4000


class Video(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.service = bot.media_jobs

    @everywhere
    @app_commands.command(name="video", description="Generate a short video from a text prompt")
    @app_commands.describe(
        prompt="What the video shows",
        model="Video model (default: this server's)",
        duration="Length in seconds",
        size="WIDTHxHEIGHT, e.g. 1280x720",
    )
    async def video(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, PROMPT_MAX_CHARS],
        model: str | None = None,
        duration: app_commands.Range[int, 1, 600] | None = None,
        size: str | None = None,
    ) -> None:
        if is_guest(interaction):  # the job's messages go through the channel, which the bot can't reach here
            await reply_privately(interaction, guest_media_refusal("video"))
            return
        opts = VideoOptions(prompt=prompt, model=model, duration=duration, size=size)
        channel = interaction.channel
        parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
        try:
            request = await self.service.prepare_video(opts, guild_id=interaction.guild_id,
                                                       channel_id=interaction.channel_id,
                                                       parent_channel_id=parent_id)
            await self.service.submit(interaction, request, origin="command")
        except UserFacingError as exc:  # a refused option, the budget, the per-member limit, "restarting"
            await reply_privately(interaction, exc.user_message(), cause=exc)

    @video.autocomplete("model")
    async def _model_autocomplete(self, interaction: discord.Interaction,
                                  current: str) -> list[app_commands.Choice[str]]:
        matches = await self.service.model_choices("video", current, interaction.guild_id)
        return _choices(matches)

    @video.autocomplete("duration")
    async def _duration_autocomplete(self, interaction: discord.Interaction,
                                     current: str) -> list[app_commands.Choice[int]]:
        typed = str(current).strip()
        gateway = await self.service.gateway_for(interaction.guild_id)
        lengths = [n for n in gateway.profile.video_durations if str(n).startswith(typed)]
        return [app_commands.Choice(name=f"{n} s", value=n) for n in lengths][: discord_limits.AUTOCOMPLETE_CHOICES]

    @video.autocomplete("size")
    async def _size_autocomplete(self, interaction: discord.Interaction,
                                 current: str) -> list[app_commands.Choice[str]]:
        needle = current.strip().lower()
        gateway = await self.service.gateway_for(interaction.guild_id)
        return _choices([s for s in gateway.profile.video_sizes if needle in s])


def _choices(values: list[str]) -> list[app_commands.Choice[str]]:
    return [
        app_commands.Choice(name=v[: discord_limits.CHOICE_NAME], value=v)
        for v in values
        if len(v) <= discord_limits.CHOICE_VALUE
    ][: discord_limits.AUTOCOMPLETE_CHOICES]


async def setup(bot: GatecordBot) -> None:
    cog = Video(bot)
    await bot.add_cog(cog)
    # global where the operator's gateway makes video; else only for servers whose own gateway does
    bot.guild_commands.offer(
        "video", lambda gateway: [cog.video] if bot.media_jobs.supports("video", gateway) else [], every=[cog.video])
