"""/imagine create, /imagine edit and "Edit image": Discord input → ``bot.media_jobs`` (the media-job
service) → replies.

The service runs the job (budget, queue, gateway, progress, grid, recovery after a restart); this
cog turns the commands' options into service calls and refusals into ephemeral replies. The job's
buttons are answered by cogs/media_buttons.py. Edits (``/imagine edit`` and the "Edit image" message
command, whose modal asks for the instruction) exist only when the gateway offers them.

Which gateway: /imagine and Edit image are global commands when the operator's gateway offers them,
and guild commands of each server whose own gateway does (``bot.guild_commands``); /imagine is built
twice (with and without ``edit``) so that each gateway gets the one it can serve. The picture is
taken in by bot/media/edit_source.py after a public deferral (downloading it may take longer than
Discord's 3 s), so a refusal then replaces the "thinking…" message with a private one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.app.installs import guest_media_refusal, is_guest
from bot.media.edit_source import (
    EditIntake,
    EditOptions,
    EditSource,
    check_message_picture,
    edit_source_from_attachments,
    edit_source_from_message,
)
from bot.media.options import MAX_COUNT, ImagineOptions, OptionError
from bot.media.service import KindUnsupported
from bot.rendering import limits as discord_limits
from bot.rendering.errors import user_error_message
from bot.rendering.replies import ERROR_PREFIX, InteractionTarget, reply_privately
from bot.rendering.user_facing import UserFacingError
from cogs._installs import everywhere
from gateway_client import GatewayClient

log = logging.getLogger(__name__)

EDIT_IMAGE = "Edit image"
#: the longest edit instruction (OpenAI's edits take 1000 characters with every model)
MAX_INSTRUCTION = 1000
#: how long the "Edit image" modal waits for its instruction
MODAL_TIMEOUT = 15 * 60.0

#: takes the picture in, called with ``intake=`` (how to fetch it) and ``max_bytes=`` (the gateway's PNG limit)
SourceMaker = Callable[..., Awaitable[EditSource]]


class Imagine(commands.Cog):
    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.service = bot.media_jobs
        #: /imagine without and with ``edit`` (the one a gateway gets depends on whether it edits)
        self.groups = {edits: imagine_group(self, edits=edits) for edits in (False, True)}
        self.edit_menu = everywhere(app_commands.ContextMenu(name=EDIT_IMAGE, callback=self.edit_image_menu))

    def images_for(self, gateway: GatewayClient) -> list[app_commands.Group]:
        """/imagine as ``gateway`` can serve it (none when it does not draw)."""
        if not self.service.supports("image", gateway):
            return []
        return [self.groups[self.service.supports("edit", gateway)]]

    def edits_for(self, gateway: GatewayClient) -> list[app_commands.ContextMenu]:
        return [self.edit_menu] if self.service.supports("edit", gateway) else []

    async def cog_unload(self) -> None:
        self.bot.guild_commands.withdraw("images")
        self.bot.guild_commands.withdraw("image_edits")
        for group in self.groups.values():
            if self.bot.tree.get_command(group.name) is group:
                self.bot.tree.remove_command(group.name)
        if self.bot.tree.get_command(self.edit_menu.name, type=self.edit_menu.type) is self.edit_menu:
            self.bot.tree.remove_command(self.edit_menu.name, type=self.edit_menu.type)

    # -- /imagine create ------------------------------------------------------------------------

    async def create(self, interaction: discord.Interaction, opts: ImagineOptions) -> None:
        if is_guest(interaction):  # the job's messages go through the channel, which the bot can't reach here
            await reply_privately(interaction, guest_media_refusal("imagine create"))
            return
        try:
            request = await self.service.prepare(opts, guild_id=interaction.guild_id,
                                                 channel_id=interaction.channel_id,
                                                 parent_channel_id=_parent_id(interaction))
            await self.service.submit(interaction, request, origin="command")
        except UserFacingError as exc:
            await reply_privately(interaction, exc.user_message(), cause=exc)

    async def model_choices(self, interaction: discord.Interaction, kind: str,
                            current: str) -> list[app_commands.Choice[str]]:
        """The models of ``kind`` of the gateway serving this server."""
        matches = await self.service.model_choices(kind, current, interaction.guild_id)
        return [
            app_commands.Choice(name=m[: discord_limits.CHOICE_NAME], value=m)
            for m in matches
            if len(m) <= discord_limits.CHOICE_VALUE
        ][: discord_limits.AUTOCOMPLETE_CHOICES]

    # -- /imagine edit and "Edit image" ---------------------------------------------------------

    async def edit(self, interaction: discord.Interaction, image: discord.Attachment, mask: discord.Attachment | None,
                   opts: EditOptions) -> None:
        if is_guest(interaction):
            await reply_privately(interaction, guest_media_refusal("imagine edit"))
            return
        await self.submit_edit(interaction, opts,
                               partial(edit_source_from_attachments, image, mask))

    async def edit_image_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The message command: refuse a message without a usable picture at once, else ask for the
        instruction (the modal submits the edit)."""
        if is_guest(interaction):
            await reply_privately(interaction, guest_media_refusal("imagine edit"))
            return
        gateway = await self.service.gateway_for(interaction.guild_id)
        if not self.service.supports("edit", gateway):  # a global menu, and this server's gateway cannot edit
            await reply_privately(interaction, KindUnsupported("edit", gateway).user_message())
            return
        settings = self.bot.settings
        try:
            check_message_picture(message, cdn_hosts=settings.discord.cdn_hosts,
                                  max_download_bytes=settings.vision.max_download_bytes)
        except UserFacingError as exc:
            await reply_privately(interaction, exc.user_message(), cause=exc)
            return
        await interaction.response.send_modal(EditModal(self, message))

    async def submit_edit(self, interaction: discord.Interaction, opts: EditOptions, source: SourceMaker) -> None:
        """Defer publicly (the picture is downloaded and converted first), then prepare and submit the
        edit; every refusal replaces the "thinking…" message with a private one."""
        await interaction.response.defer(thinking=True)
        try:
            intake = EditIntake.from_settings(self.bot.settings, self.bot.cdn_http, self.bot.vision.decodes)
            gateway = await self.service.gateway_for(interaction.guild_id)
            if not self.service.supports("edit", gateway):
                raise KindUnsupported("edit", gateway)
            picture = await source(intake=intake, max_bytes=gateway.profile.max_edit_image_bytes)
            request = await self.service.prepare_edit(opts, picture, guild_id=interaction.guild_id,
                                                      channel_id=interaction.channel_id,
                                                      parent_channel_id=_parent_id(interaction))
            await self.service.submit(interaction, request, origin="command")
        except UserFacingError as exc:
            await InteractionTarget(interaction).refuse(exc.user_message(), cause=exc)
        except Exception as exc:  # the deferral must not stay "thinking…": say what failed, privately
            await InteractionTarget(interaction).refuse(ERROR_PREFIX + user_error_message(exc))


def _parent_id(interaction: discord.Interaction) -> int | None:
    channel = interaction.channel
    return getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None


def imagine_group(cog: Imagine, *, edits: bool) -> app_commands.Group:
    """``/imagine create`` (and ``/imagine edit`` when ``edits``)."""
    group = everywhere(app_commands.Group(name="imagine", description="Generate or edit images"))
    group.add_command(create_command(cog))
    if edits:
        group.add_command(edit_command(cog))
    return group


def create_command(cog: Imagine) -> app_commands.Command[Any, Any, None]:
    """``/imagine create prompt [model] [count] [steps] [seed] [size] [width] [height] [negative_prompt]``."""

    async def create(
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
        await cog.create(interaction, ImagineOptions(prompt=prompt, model=model, count=count, steps=steps, seed=seed,
                                                     size=size, width=width, height=height,
                                                     negative_prompt=negative_prompt))

    async def model(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await cog.model_choices(interaction, "image", current)

    create = app_commands.describe(
        prompt="What to draw",
        model="Image model (default: this server's)",
        count="How many images, 1–4",
        steps="Generation steps (FLUX: 1–4)",
        seed="Seed for reproducible results",
        size="WIDTHxHEIGHT, e.g. 1024x1024 (or give width and height)",
        width="Width in pixels (FLUX: a multiple of 16)",
        height="Height in pixels (FLUX: a multiple of 32)",
        negative_prompt="What the image should not show",
    )(create)
    command: app_commands.Command[Any, Any, None] = app_commands.Command(
        name="create", description="Generate images from a text prompt", callback=create)
    command.autocomplete("model")(model)
    return command


def edit_command(cog: Imagine) -> app_commands.Command[Any, Any, None]:
    """``/imagine edit image prompt [mask] [model] [count] [size]`` (added only when edits are offered)."""

    async def edit(
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, MAX_INSTRUCTION],
        mask: discord.Attachment | None = None,
        model: str | None = None,
        count: int | None = None,
        size: str | None = None,
    ) -> None:
        await cog.edit(interaction, image, mask, EditOptions(prompt=prompt, model=model, count=count, size=size))

    async def model(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await cog.model_choices(interaction, "edit", current)

    edit = app_commands.describe(
        image="The picture to edit (PNG, JPEG, WebP, still GIF or BMP)",
        prompt="What to change, e.g. \"make the sky purple\"",
        mask="A PNG of the same shape, transparent where the picture may change (default: everywhere)",
        model="Image model (default: this server's)",
        count="How many results, 1–4",
        size="WIDTHxHEIGHT of the results, e.g. 1024x1024",
    )(edit)
    command: app_commands.Command[Any, Any, None] = app_commands.Command(
        name="edit", description="Edit a picture with an instruction", callback=edit)
    command.autocomplete("model")(model)
    return command


class EditModal(discord.ui.Modal, title=EDIT_IMAGE):
    """The "Edit image" instruction (and an optional count), then the edit of ``message``'s picture."""

    instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
        label="Instruction", style=discord.TextStyle.paragraph, placeholder="What to change, e.g. add a red hat",
        min_length=1, max_length=MAX_INSTRUCTION, required=True, custom_id="edit:instruction",
    )
    count: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
        label=f"How many results (1–{MAX_COUNT})", style=discord.TextStyle.short, placeholder="default",
        max_length=2, required=False, custom_id="edit:count",
    )

    def __init__(self, cog: Imagine, message: discord.Message) -> None:
        super().__init__(timeout=MODAL_TIMEOUT)
        self.cog = cog
        self.message = message

    async def on_submit(self, interaction: discord.Interaction) -> None:
        text = self.count.value.strip()
        if text and not (text.isdigit() and 1 <= int(text) <= MAX_COUNT):
            await reply_privately(interaction, OptionError("count", list(range(1, MAX_COUNT + 1)), text).user_message())
            return
        opts = EditOptions(prompt=self.instruction.value.strip() or self.instruction.value,
                           count=int(text) if text else None)
        await self.cog.submit_edit(interaction, opts, partial(edit_source_from_message, self.message))


async def setup(bot: GatecordBot) -> None:
    cog = Imagine(bot)
    await bot.add_cog(cog)
    # global where the operator's gateway draws (and edits); else only for servers whose own gateway does
    bot.guild_commands.offer("images", cog.images_for, every=list(cog.groups.values()))
    bot.guild_commands.offer("image_edits", cog.edits_for, every=[cog.edit_menu])
