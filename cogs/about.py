"""/about: version, gateway profile, uptime and Discord latency — the smallest end-to-end path."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.budgets.rules import Requester
from bot.gateways.defaults import default_model
from bot.gateways.directory import is_guild_client
from bot.rendering.replies import NO_MENTIONS
from cogs._installs import everywhere


def format_uptime(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


class About(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot

    @everywhere
    @app_commands.command(name="about", description="What this bot is, which AI gateway it uses, and how it is doing")
    async def about(self, interaction: discord.Interaction) -> None:
        latency = self.bot.latency
        latency_text = f"{latency * 1000:.0f} ms" if latency == latency and latency != float("inf") else "unknown"
        gateway = self.bot.settings.gateway
        line = f"AI gateway: `{gateway.profile}` (chat model `{gateway.chat_model}`)"
        guild_id = Requester.from_interaction(interaction).guild_id
        try:
            serving = await self.bot.gateways.for_guild(guild_id)
        except Exception:  # its key can't be read: it is still this server's own gateway
            line = ("AI gateway: this server's own, which can't be used right now (a server manager can "
                    "`/gateway set` it again)")
        else:
            if is_guild_client(serving):
                chat_model = default_model(serving, "chat", self.bot.settings) or "the gateway's default"
                line = f"AI gateway: this server's own, `{serving.profile.name}` (chat model `{chat_model}`)"
        await interaction.response.send_message(
            f"**Gatecord** {self.bot.version}\n"
            f"{line}\n"
            f"Uptime: {format_uptime(self.bot.uptime_seconds())}\n"
            f"Discord latency: {latency_text}",
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(About(bot))
