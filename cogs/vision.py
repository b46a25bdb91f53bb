"""Vision: ``/vision``, the "Describe image" message command, and images in messages for the bot.

Every request: acknowledge at once (defer, or an immediate "busy") → the image attachments, checked
and prepared (bot/vision/images.py: declared type/size, CDN host, capped download, pixel cap, thread
decoding, downscale, data URL) → a model that can see images (bot/vision/models.py; the footer says
when the bot switched) → the shared answer pipeline (bot/chat/answer.py: admission, the VISION budget,
streaming, footer, error messages).

Mentions and replies are the chat cog's: it asks ``wants(message)`` and hands the turn's spec to
``with_images`` so the conversation history and recording stay in one place.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.admission import Busy
from bot.chat.conversation import new_conversation_id, render_system_prompt
from bot.app.factory import GatecordBot
from bot.budgets.quotas import Feature, Requester
from bot.rendering.text import truncate
from bot.rendering.errors import user_error_message
from bot.chat.answer import ERROR_PREFIX, NO_MENTIONS, AnswerRunner, AnswerSpec, InteractionTarget, shared_admission
from cogs._model_choices import VISION_KINDS, autocomplete_for
from bot.vision.inputs import (
    DEFAULT_PROMPT,
    Gathered,
    gather_images,
    image_attachments,
    image_links,
    vision_message,
)
from bot.vision.models import VisionChoice, choose_vision_model
from gateway_client import ChatMessage

log = logging.getLogger(__name__)

DESCRIBE_IMAGE = "Describe image"
FOOTER_NOTE_MAX = 80
MAX_NOTES = 3
MESSAGE_MAX = 1900


class Vision(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.admission = shared_admission(bot)
        self.runner = AnswerRunner(bot)
        self.describe_menu = app_commands.ContextMenu(name=DESCRIBE_IMAGE, callback=self.describe_image)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.describe_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.describe_menu.name, type=self.describe_menu.type)

    # ------------------------------------------------------------------------------------------
    # /vision and "Describe image"
    # ------------------------------------------------------------------------------------------

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
        await self._answer_interaction(interaction, [image], (), prompt or DEFAULT_PROMPT, model, chosen=True)

    async def describe_image(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The message command: describe the pictures attached to the chosen message."""
        await self._answer_interaction(interaction, list(message.attachments), image_links(message),
                                       DEFAULT_PROMPT, None)

    async def _answer_interaction(
        self, interaction: discord.Interaction, attachments: list[Any], links: Any, prompt: str, model: str | None,
        *, chosen: bool = False,
    ) -> None:
        try:
            ticket = self.admission.admit(new_conversation_id())
        except Busy as exc:
            await interaction.response.send_message(exc.user_message(), ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        try:
            await interaction.response.defer(thinking=True)
        except BaseException:
            ticket.cancel()
            raise
        target = InteractionTarget(interaction)
        try:
            cfg = await self._config(interaction.guild_id, interaction.channel)
            gathered = await self._gather(attachments, links, chosen=chosen)
            choice = await self._choose(model or cfg.vision_model, cfg)
            system = render_system_prompt(
                cfg.system_prompt, now=datetime.now(UTC),
                server=interaction.guild.name if interaction.guild else None,
                channel=getattr(interaction.channel, "name", None),
                user=getattr(interaction.user, "display_name", None),
            )
            messages = [ChatMessage.system(system)] if system.strip() else []
            messages.append(vision_message(prompt, gathered, send_as=self.bot.settings.vision.send_as))
            spec = AnswerSpec(
                messages=messages, requester=Requester.from_interaction(interaction), model=choice.model,
                temperature=cfg.temperature, max_tokens=cfg.max_tokens, feature=Feature.VISION,
                model_kinds=VISION_KINDS, footer_extra=self._footer(choice, gathered),
            )
        except Exception as exc:
            ticket.cancel()
            await self._refuse(target, exc)
            return
        await self.runner.run(target, spec, ticket)

    # ------------------------------------------------------------------------------------------
    # hook for the chat cog (mentions, replies, bot threads)
    # ------------------------------------------------------------------------------------------

    def wants(self, message: discord.Message) -> bool:
        """Whether a message for the bot carries pictures (or image links) that are this cog's to answer."""
        return bool(image_attachments(message.attachments) or image_links(message))

    async def with_images(self, message: discord.Message, spec: AnswerSpec, target: Any) -> AnswerSpec | None:
        """The chat turn ``spec`` with the message's images added, a vision model and the VISION budget;
        None when the images were refused — the member was told why through ``target``."""
        try:
            gathered = await self._gather(list(message.attachments), image_links(message))
            channel = message.channel
            parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
            cfg = await self.bot.guild_config.effective(message.guild.id if message.guild else None,
                                                        channel.id, parent_id)
            choice = await self._choose(spec.model or cfg.chat_model, cfg)
        except Exception as exc:
            await self._refuse(target, exc)
            return None
        last = spec.messages[-1]
        text = last.content if isinstance(last.content, str) else DEFAULT_PROMPT
        messages = [*spec.messages[:-1], vision_message(text, gathered, send_as=self.bot.settings.vision.send_as)]
        return dataclasses.replace(
            spec, messages=messages, model=choice.model, feature=Feature.VISION, model_kinds=VISION_KINDS,
            footer_extra=self._footer(choice, gathered) + tuple(spec.footer_extra), prompt_tokens=None,
        )

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------

    async def _config(self, guild_id: int | None, channel: Any) -> Any:
        parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
        return await self.bot.guild_config.effective(guild_id, getattr(channel, "id", None), parent_id)

    async def _gather(self, attachments: list[Any], links: Any, *, chosen: bool = False) -> Gathered:
        return await gather_images(self.bot.cdn_http, attachments, self.bot.settings, links=list(links), chosen=chosen)

    async def _choose(self, wanted: str | None, cfg: Any) -> VisionChoice:
        configured = self.bot.settings.gateway.vision_model
        return await choose_vision_model(self.bot.gateway, wanted=wanted, preferred=(cfg.vision_model, configured),
                                         configured=configured)

    @staticmethod
    def _footer(choice: VisionChoice, gathered: Gathered) -> tuple[str, ...]:
        notes = [n for n in (choice.footer_note(),) if n]
        notes += [truncate(n, FOOTER_NOTE_MAX) for n in gathered.notes[:MAX_NOTES]]
        return tuple(notes)

    @staticmethod
    async def _refuse(target: Any, exc: BaseException) -> None:
        own = getattr(exc, "user_message", None)
        if callable(own):  # image refusals word their own (possibly several lines) message
            text = truncate(own(), MESSAGE_MAX)
        else:
            text = user_error_message(exc)  # logs unexpected errors with a reference
        try:
            await target.put(0, ERROR_PREFIX + text)
        except Exception as show_error:
            log.warning("could not tell the member why the image was refused: %r", show_error)


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Vision(bot))
