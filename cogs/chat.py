"""Chat: ``/chat`` and ``/models``, and conversations by mention, by reply, and in the bot's threads.

A Discord adapter only: options in → ``bot.chat`` (bot/chat/service.py owns the turn) → Discord out.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.chat.admission import Busy
from bot.chat.service import SlashPrompt
from bot.gateways.directory import is_guild_client
from bot.rendering.errors import describe_error
from bot.rendering.replies import ERROR_PREFIX, NO_MENTIONS, reply_privately
from cogs._chat_models_view import ModelPages
from cogs._installs import everywhere
from cogs._model_choices import (
    CHAT_KINDS,
    IMAGE_KINDS,
    VISION_KINDS,
    autocomplete_for,
    gateway_for,
    last_gateway_for,
    models_of_kind,
)

log = logging.getLogger(__name__)

MODEL_LISTS = {"chat": ("Chat", CHAT_KINDS), "vision": ("Vision", VISION_KINDS), "image": ("Image", IMAGE_KINDS)}


class Chat(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot

    @everywhere
    @app_commands.command(name="chat", description="Ask the AI something; the answer streams in")
    @app_commands.describe(
        prompt="What you want to ask or say",
        model="Model to use (default: this channel's chat model)",
        private="Only you see the answer",
        thread="Continue the conversation in a new thread",
        file="A text or code file to include (.txt, .md, .py …), or an audio file to transcribe into the prompt",
    )
    @app_commands.autocomplete(model=autocomplete_for(CHAT_KINDS))
    async def chat(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 4000],
        model: app_commands.Range[str, 1, 100] | None = None,
        private: bool = False,
        thread: bool = False,
        file: discord.Attachment | None = None,
    ) -> None:
        try:
            key, ticket = self.bot.chat.admit_slash(interaction)
        except Busy as exc:
            await reply_privately(interaction, exc.user_message())
            return
        try:
            await interaction.response.defer(ephemeral=private, thinking=True)
        except BaseException:
            ticket.cancel()
            raise
        await self.bot.chat.slash_turn(interaction, key, ticket, SlashPrompt(prompt, model, private, thread, file))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if self.bot.user is not None:
            await self.bot.chat.on_message(message, self.bot.user)

    @commands.Cog.listener()
    async def on_command_error(self, ctx: commands.Context[Any], error: commands.CommandError) -> None:
        # The bot's prefix is its mention, so every "@bot question" is also an unknown text command.
        if not isinstance(error, commands.CommandNotFound):
            log.error("text command error: %r", error)

    @everywhere
    @app_commands.command(name="models", description="List the AI gateway's models")
    @app_commands.describe(kind="Which models to list (default: chat)")
    @app_commands.choices(kind=[
        app_commands.Choice(name="chat", value="chat"),
        app_commands.Choice(name="vision (chat with images)", value="vision"),
        app_commands.Choice(name="image generation", value="image"),
        app_commands.Choice(name="all", value="all"),
    ])
    async def models(self, interaction: discord.Interaction, kind: str = "chat") -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        label, kinds = MODEL_LISTS.get(kind, ("All", None))
        try:
            gateway = await gateway_for(interaction)  # the server's own gateway when it has one
            found = list(await gateway.list_models()) if kinds is None else await models_of_kind(gateway, kinds)
        except Exception as exc:
            await reply_privately(interaction, ERROR_PREFIX + await describe_error(
                exc, gateway=last_gateway_for(interaction)))
            return
        found.sort(key=lambda m: m.id.lower())
        where = f"this server's own gateway ({gateway.profile.name})" if is_guild_client(gateway) \
            else gateway.profile.name
        view = ModelPages(found, owner_id=interaction.user.id, title=f"{label} models on {where}")
        kwargs: dict[str, Any] = {"embed": view.embed(), "allowed_mentions": NO_MENTIONS}
        if view.pages > 1:
            kwargs["view"] = view
        await interaction.edit_original_response(**kwargs)


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Chat(bot))
