"""/gateway set|show|remove|fallback: a server's own AI gateway (bring your own key).

Server managers only (Manage Server, a server's install, in the server); every answer is private. The
cog turns the modal and options into ``bot.guild_gateway_admin`` calls (bot/gateways/service.py, which
checks before it saves) and its results into text. The key is typed once in the modal, never
prefilled and never shown again (``/gateway show``: its last four characters).
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.gateways.service import (
    SECRETS_MISSING,
    CheckReport,
    GatewayRefused,
    GatewayRequest,
    GatewayShow,
    GuildGatewayService,
)
from bot.guilds.permissions import ADMIN_PERMISSIONS, require_server_admin
from bot.rendering.errors import user_error_message
from bot.rendering.replies import NO_MENTIONS, reply_privately
from gateway_client import PROFILES

log = logging.getLogger(__name__)

PROFILE_ID = "gateway:profile"
URL_ID = "gateway:base_url"
KEY_ID = "gateway:api_key"
CHAT_ID = "gateway:chat_model"
IMAGE_ID = "gateway:image_model"
CONFIRM_SECONDS = 120.0


class GatewayGroup(app_commands.Group):
    """Only members with Manage Server see it — and only they can run it."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return require_server_admin(interaction)


def _short(text: str, n: int = 100) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _code(text: str) -> str:
    return "`" + text.replace("`", "'")[:200] + "`"


def report_text(report: CheckReport, *, saved: bool) -> str:
    """The check's report, as the server manager reads it after ``/gateway set``."""
    head = "✅ **This server now uses its own AI gateway.**" if saved else "✅ The gateway passed the check."
    lines = [
        head,
        f"**Profile:** {report.profile}",
        f"**URL:** {report.base_url}",
        f"**Health:** {report.health_detail}",
        f"**Models:** {report.model_count} listed",
        "**Default models:** chat " + (_code(report.chat_model) if report.chat_model else "the gateway's own")
        + (f", image questions {_code(report.vision_model)}" if report.vision_model else "")
        + (f", images {_code(report.image_model)}" if report.image_model else ""),
        "**Offers:** " + (", ".join(report.offers) or "nothing Gatecord uses"),
    ]
    if report.balance is not None:
        lines.append(f"**Balance:** {report.balance}")
    if not report.key_checked:
        lines.append("ℹ️ This gateway lists its models without a key, so the key is proven by the first request.")
    for warning in report.warnings:
        lines.append(f"⚠️ {warning}: change it with `/config model`.")
    lines.append("The key is stored encrypted and is never shown again. Members' requests here now go to this "
                 "gateway; `/gateway remove` goes back to the bot's.")
    return "\n".join(lines)


def show_text(shown: GatewayShow) -> str:
    info = shown.info
    models = [f"chat {_code(info.chat_model)}" if info.chat_model else "chat: the profile's default"]
    if info.vision_model:
        models.append(f"image questions {_code(info.vision_model)}")
    if info.image_model:
        models.append(f"images {_code(info.image_model)}")
    mark = {True: "✅", False: "❌", None: "❔"}[shown.key_ok]
    changed = f"<t:{int(info.updated_at)}:R>" if info.updated_at else "unknown"
    who = f" by <@{info.updated_by}>" if info.updated_by else ""
    fallback = ("allowed: when it is down, the bot's own gateway answers (never on a refused key)"
                if info.allow_operator_fallback else "not allowed: when it is down, members see why")
    return "\n".join([
        "**This server's own AI gateway**",
        f"**Profile:** {info.profile}",
        f"**URL:** {info.base_url}",
        f"**Models:** {', '.join(models)}",
        f"**Key:** …{info.key_last4} — {mark} {shown.key_status}",
        f"**Fallback to the bot's gateway:** {fallback}",
        f"**Changed:** {changed}{who}",
    ])


class GatewayModal(discord.ui.Modal):
    """"Use your own AI gateway": profile (a select in a label), base URL, key (never prefilled) and two
    optional models. Three models do not fit Discord's five fields next to the rest, and a third free-text
    field would be easy to get wrong: the vision model is picked by the check (the chat model when it
    reads images, else the first the gateway lists as reading images)."""

    def __init__(self, service: GuildGatewayService, *, profile: str, base_url: str = "", chat_model: str = "",
                 image_model: str = "") -> None:
        super().__init__(title="Use your own AI gateway", timeout=600)
        self.service = service
        self.profile: discord.ui.Select[GatewayModal] = discord.ui.Select(
            custom_id=PROFILE_ID, min_values=1, max_values=1, required=True,
            options=[discord.SelectOption(label=name, value=name, description=_short(p.description or name),
                                          default=name == profile)
                     for name, p in sorted(PROFILES.items())][:25],
        )
        self.add_item(discord.ui.Label(text="Profile", description="Which API the gateway speaks",
                                       component=self.profile))
        self.base_url: discord.ui.TextInput[GatewayModal] = discord.ui.TextInput(
            custom_id=URL_ID, placeholder="https://gateway.example.com", default=base_url or None, max_length=300)
        self.add_item(discord.ui.Label(text="Base URL", component=self.base_url))
        self.api_key: discord.ui.TextInput[GatewayModal] = discord.ui.TextInput(
            custom_id=KEY_ID, placeholder="Your gateway API key (stored encrypted, never shown again)",
            max_length=512)
        self.add_item(discord.ui.Label(text="API key", component=self.api_key))
        self.chat_model: discord.ui.TextInput[GatewayModal] = discord.ui.TextInput(
            custom_id=CHAT_ID, required=False, default=chat_model or None, max_length=200,
            placeholder="Optional: the profile's default")
        self.add_item(discord.ui.Label(text="Chat model", component=self.chat_model))
        self.image_model: discord.ui.TextInput[GatewayModal] = discord.ui.TextInput(
            custom_id=IMAGE_ID, required=False, default=image_model or None, max_length=200,
            placeholder="Optional: the profile's default")
        self.add_item(discord.ui.Label(text="Image model", component=self.image_model))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        request = GatewayRequest(
            profile=(self.profile.values or [""])[0], base_url=self.base_url.value, api_key=self.api_key.value,
            chat_model=self.chat_model.value, image_model=self.image_model.value,
        )
        try:
            report, _info = await self.service.save(interaction.guild_id, request, interaction.user.id)
        except GatewayRefused as refused:
            await reply_privately(interaction, f"❌ {refused.user_message()}")
            return
        await reply_privately(interaction, report_text(report, saved=True))

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:  # type: ignore[override]
        text = user_error_message(error)  # logs an unexpected exception with the reference it shows
        try:
            await reply_privately(interaction, f"❌ {text} Nothing was saved.")
        except discord.HTTPException:
            log.warning("could not tell a server manager why /gateway set failed")


class RemoveView(discord.ui.View):
    """Confirm before going back to the operator's gateway (only whoever asked may press)."""

    def __init__(self, service: GuildGatewayService, guild_id: int, user_id: int) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.service = service
        self.guild_id = guild_id
        self.user_id = user_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.user_id:
            await interaction.response.send_message("Only whoever ran `/gateway remove` can answer this.",
                                                    ephemeral=True)
            return False
        return True

    @discord.ui.button(label="Remove it", style=discord.ButtonStyle.danger, custom_id="gateway:remove:yes")
    async def confirm(self, interaction: discord.Interaction, _button: discord.ui.Button[Any]) -> None:
        self.stop()
        try:
            removed = await self.service.remove(self.guild_id, interaction.user.id)
        except GatewayRefused as refused:
            await interaction.response.edit_message(content=f"❌ {refused.user_message()}", view=None)
            return
        text = ("✅ Removed. This server uses the bot's own AI gateway again; its key is deleted."
                if removed else "This server had no gateway of its own any more: nothing to remove.")
        await interaction.response.edit_message(content=text, view=None)

    @discord.ui.button(label="Keep it", style=discord.ButtonStyle.secondary, custom_id="gateway:remove:no")
    async def cancel(self, interaction: discord.Interaction, _button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Kept: nothing changed.", view=None)


class Gateway(commands.Cog):
    gateway = GatewayGroup(
        name="gateway", description="This server's own AI gateway (bring your own key)",
        guild_only=True, default_permissions=ADMIN_PERMISSIONS,
    )

    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot

    @property
    def service(self) -> GuildGatewayService:
        return self.bot.guild_gateway_admin

    async def _usable_service(self, interaction: discord.Interaction) -> GuildGatewayService | None:
        """The service; None once the member was told privately that this bot cannot store keys yet (no
        ``[secrets] key``) and how its operator enables it — every /gateway subcommand starts here."""
        service = self.service
        if service.secrets_configured:
            return service
        await reply_privately(interaction, SECRETS_MISSING)
        return None

    @gateway.command(name="set", description="Use your own AI gateway and key for this server (checked first)")
    async def gateway_set(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        service = await self._usable_service(interaction)
        if service is None:
            return
        info = await service.info(interaction.guild_id)
        modal = GatewayModal(
            service, profile=info.profile if info else service.operator_profile,
            base_url=info.base_url if info else "", chat_model=info.chat_model if info else "",
            image_model=info.image_model if info else "",
        )
        await interaction.response.send_modal(modal)

    @gateway.command(name="show", description="This server's own AI gateway, with a live check of its key")
    async def gateway_show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        service = await self._usable_service(interaction)
        if service is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        shown = await service.show(interaction.guild_id)
        if shown is None:
            await reply_privately(interaction, "This server uses the bot's own AI gateway "
                                               f"({service.operator_profile}). `/gateway set` to use your own.")
            return
        await reply_privately(interaction, show_text(shown))

    @gateway.command(name="remove", description="Go back to the bot's own AI gateway (asks to confirm)")
    async def gateway_remove(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        service = await self._usable_service(interaction)
        if service is None:
            return
        info = await service.info(interaction.guild_id)
        if info is None:
            await reply_privately(interaction, "This server already uses the bot's own AI gateway: nothing to remove.")
            return
        text = (f"Remove this server's own gateway ({info.profile}, {info.base_url}, key …{info.key_last4})?\n"
                f"Chat, images, voice and the rest go back to the bot's gateway ({service.operator_profile}) with "
                "its models, capabilities and the bot's budgets; the stored key is deleted; commands this "
                "server had only through its gateway go away.")
        await interaction.response.send_message(
            text, view=RemoveView(service, interaction.guild_id, interaction.user.id), ephemeral=True,
            allowed_mentions=NO_MENTIONS)

    @gateway.command(name="fallback", description="Whether the bot's gateway may answer when yours is down")
    @app_commands.describe(allowed="True: the bot's own gateway answers when yours is down (never on a refused key)")
    async def gateway_fallback(self, interaction: discord.Interaction, allowed: bool) -> None:
        assert interaction.guild_id is not None
        service = await self._usable_service(interaction)
        if service is None:
            return
        info = await service.set_fallback(interaction.guild_id, allowed, interaction.user.id)
        if info is None:
            text = "This server has no gateway of its own: `/gateway set` first."
        elif allowed:
            text = ("✅ When this server's gateway is down, the bot's own gateway answers instead. A refused key "
                    "never falls back: members are told to ask a server manager.")
        else:
            text = "✅ Only this server's own gateway answers: when it is down, members are told why."
        await reply_privately(interaction, text)


async def setup(bot: GatecordBot) -> None:
    if bot.settings.guild_gateways.enabled:  # the operator can keep every server on its own gateway
        await bot.add_cog(Gateway(bot))
