"""Server admin commands (/config, /quota, /usage, /credits) and the member's /mylimits.

Admin commands are hidden from members without Manage Server (default_member_permissions) and
checked again at run time, because a client can send the interaction anyway. Every reply is
ephemeral with no mentions; every change is validated and audited by the service it goes through
(``bot.guild_config`` for settings, ``bot.quotas`` for budgets). This cog only turns options into
service calls and results into replies.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.budgets.chart import render_usage_chart_async
from bot.budgets.rules import Requester, limit_text
from bot.gateways.directory import is_guild_client
from bot.guilds.audit import InvalidSetting
from bot.guilds.config import GUILD_LEVEL
from bot.guilds.permissions import ADMIN_PERMISSIONS, require_server_admin
from bot.guilds.triggers import MAX_TRIGGERS
from bot.rendering.errors import user_error_message
from bot.rendering.replies import reply_privately
from cogs._admin_text import (
    auto_answers_text,
    changes_text,
    config_help_text,
    config_show_text,
    mylimits_text,
    quota_show_text,
    tier_text,
    top_members_text,
    usage_totals_text,
)
from cogs._installs import everywhere
from gateway_client.errors import Unsupported

log = logging.getLogger(__name__)


KindChoice = Literal[
    "chat_requests", "tokens", "vision_requests", "images", "credits", "speech_chars", "transcription_seconds",
    "video_seconds", "music_seconds", "embedding_tokens",
]
ModelKindChoice = Literal["chat", "vision", "image"]
FieldChoice = Literal[
    "chat_model", "vision_model", "image_model", "system_prompt", "temperature", "max_tokens",
    "history_messages", "answer_mentions", "voice_replies", "listen", "auto_thread", "triggers",
    "knowledge_search", "auto_answer", "tools",
]
ConfigChannel = discord.TextChannel | discord.Thread | discord.VoiceChannel | discord.ForumChannel


class AdminGroup(app_commands.Group):
    """A command group only members with Manage Server see — and only they can run."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return require_server_admin(interaction)


class Admin(commands.Cog):
    config = AdminGroup(
        name="config", description="Models, prompts and per-channel settings of this server",
        guild_only=True, default_permissions=ADMIN_PERMISSIONS,
    )
    quota = AdminGroup(
        name="quota", description="Daily budgets of this server and its members",
        guild_only=True, default_permissions=ADMIN_PERMISSIONS,
    )

    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot

    # ------------------------------------------------------------------ errors

    # ------------------------------------------------------------------ /config

    @config.command(name="show", description="Show the settings that apply in a channel, and recent changes")
    @app_commands.describe(channel="The channel to look at (default: this one)")
    async def config_show(self, interaction: discord.Interaction, channel: ConfigChannel | None = None) -> None:
        assert interaction.guild_id is not None
        target = channel or interaction.channel
        channel_id = target.id if target is not None else interaction.channel_id
        parent_id = getattr(target, "parent_id", None)
        report = await self.bot.guild_config.explain(interaction.guild_id, channel_id, parent_id)
        await reply_privately(
            interaction,
            config_show_text(report.config, report.sources, report.layers, report.history, f"<#{channel_id}>"),
        )

    @config.command(name="model", description="Set the server's model for chat, image questions or image generation")
    @app_commands.describe(model="A model id offered by the AI gateway", kind="Which model to set (default: chat)")
    async def config_model(self, interaction: discord.Interaction, model: str, kind: ModelKindChoice = "chat") -> None:
        await self._set(interaction, None, {f"{kind}_model": model})

    @config_model.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        kind = getattr(interaction.namespace, "kind", None) or "chat"
        try:
            ids = await self.bot.guild_config.model_ids(kind, current, guild_id=interaction.guild_id)
        except Exception:
            return []
        return [app_commands.Choice(name=i[:100], value=i[:100]) for i in ids[:25]]

    @config.command(
        name="system-prompt", description="Set the server's system prompt ({server} and {date} are filled in)"
    )
    @app_commands.describe(prompt="The instructions the model gets before every conversation")
    async def config_system_prompt(self, interaction: discord.Interaction, prompt: str) -> None:
        await self._set(interaction, None, {"system_prompt": prompt})

    @config.command(
        name="defaults",
        description="Set the server's temperature, max tokens, history length, mention answers or voice replies",
    )
    @app_commands.describe(
        temperature="0 to 2", max_tokens="Longest answer in tokens", history_messages="Messages of context to send",
        answer_mentions="Answer when the bot is mentioned",
        voice_replies="Also answer voice messages with a voice message",
    )
    async def config_defaults(
        self, interaction: discord.Interaction, temperature: float | None = None, max_tokens: int | None = None,
        history_messages: int | None = None, answer_mentions: bool | None = None, voice_replies: bool | None = None,
    ) -> None:
        values = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens,
                                    "history_messages": history_messages, "answer_mentions": answer_mentions,
                                    "voice_replies": voice_replies}.items()
                  if v is not None}
        await self._set(interaction, None, values)

    @config.command(name="channel", description="Override settings in one channel (its threads inherit them)")
    @app_commands.describe(
        channel="The channel", model="Chat model id", system_prompt="System prompt", temperature="0 to 2",
        max_tokens="Longest answer in tokens", answer_mentions="Answer when the bot is mentioned there",
        voice_replies="Also answer voice messages there with a voice message",
        listen="Answer every message there, no mention needed (each member keeps their own conversation)",
        auto_thread="A mention (with listen: any message) opens a thread named after it, answered there",
        triggers=f"Up to {MAX_TRIGGERS} words, comma-separated, that count as a mention (whole words, any case)",
        knowledge_search="Members may search the server's knowledge base there (/knowledge search)",
        auto_answer="A help channel (forum or text): answer each new post from the server's knowledge, with sources",
        tools="Functions chat may call there: all, off, or a comma list (search_knowledge, generate_image, …)",
    )
    async def config_channel(
        self, interaction: discord.Interaction, channel: ConfigChannel, model: str | None = None,
        system_prompt: str | None = None, temperature: float | None = None, max_tokens: int | None = None,
        answer_mentions: bool | None = None, voice_replies: bool | None = None, listen: bool | None = None,
        auto_thread: bool | None = None, triggers: app_commands.Range[str, 1, 400] | None = None,
        knowledge_search: bool | None = None,
        auto_answer: bool | None = None,
        tools: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        values = {k: v for k, v in {"chat_model": model, "system_prompt": system_prompt, "temperature": temperature,
                                    "max_tokens": max_tokens, "answer_mentions": answer_mentions,
                                    "voice_replies": voice_replies, "listen": listen, "auto_thread": auto_thread,
                                    "triggers": triggers, "knowledge_search": knowledge_search,
                                    "auto_answer": auto_answer, "tools": tools}.items()
                  if v is not None}
        await self._set(interaction, channel.id, values)

    @config.command(name="help", description="What each setting does")
    async def config_help(self, interaction: discord.Interaction) -> None:
        await reply_privately(interaction, config_help_text())

    @config.command(name="reset", description="Return settings to the defaults (server level, or one channel)")
    @app_commands.describe(
        channel="Only this channel's overrides", setting="Only this setting",
        everything="Also clear every channel's overrides",
    )
    async def config_reset(
        self, interaction: discord.Interaction, channel: ConfigChannel | None = None,
        setting: FieldChoice | None = None, everything: bool = False,
    ) -> None:
        assert interaction.guild_id is not None
        removed = await self.bot.guild_config.reset(
            interaction.guild_id, interaction.user.id, channel_id=channel.id if channel else None,
            fields=[setting] if setting else None, include_channels=everything and channel is None,
        )
        if not removed:
            await reply_privately(interaction, "Nothing to reset: those settings were already the defaults.")
            return
        parts = []
        for layer, values in removed.items():
            where = "server" if layer == GUILD_LEVEL else f"<#{layer}>"
            parts.append(f"• {where}: " + ", ".join(sorted(n.replace("_", " ") for n in values)))
        await reply_privately(interaction, "Back to the defaults:\n" + "\n".join(parts))

    async def _set(self, interaction: discord.Interaction, channel_id: int | None, values: dict[str, Any]) -> None:
        assert interaction.guild_id is not None
        if any(k.endswith("_model") for k in values):
            await interaction.response.defer(ephemeral=True, thinking=True)  # the model check asks the gateway
        gc = self.bot.guild_config
        try:
            if channel_id is None:
                changes = await gc.set_guild(interaction.guild_id, interaction.user.id, **values)
                where = "the server settings"
            else:
                changes = await gc.set_channel(interaction.guild_id, channel_id, interaction.user.id, **values)
                where = f"<#{channel_id}>"
        except InvalidSetting as exc:
            await reply_privately(interaction, f"Not changed: {exc}")
            return
        await reply_privately(interaction, changes_text(changes, where))

    # ------------------------------------------------------------------ /quota

    @quota.command(name="show", description="Show the server's daily budgets, member defaults and role overrides")
    async def quota_show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None and interaction.guild is not None
        q = self.bot.quotas
        limits = await q.guild_limits(interaction.guild_id)
        today = await q.guild_today(interaction.guild_id)
        names = {}
        for role_id in limits.roles:
            role = interaction.guild.get_role(role_id)
            names[role_id] = (
                ("@everyone" if role_id == interaction.guild_id else f"@{role.name}") if role else f"<@&{role_id}>"
            )
        status = await self.bot.premium.status(Requester(interaction.guild_id, None, 0))
        await reply_privately(interaction, quota_show_text(limits, today, names,
                                                           tier=tier_text(status, in_server=True)))

    @quota.command(name="set", description="Set a daily budget for the whole server or for each member")
    @app_commands.describe(
        scope="server = everyone together; member = each member", kind="Which budget",
        limit="The daily limit; -1 = unlimited; leave empty to return to the config default",
    )
    async def quota_set(
        self, interaction: discord.Interaction, scope: Literal["server", "member"], kind: KindChoice,
        limit: float | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        try:
            old, new = await self.bot.quotas.set_limit(
                interaction.guild_id, "guild" if scope == "server" else "member", kind, limit, interaction.user.id
            )
        except InvalidSetting as exc:
            await reply_privately(interaction, f"Not changed: {exc}")
            return
        who = "The server's" if scope == "server" else "Each member's"
        await reply_privately(
            interaction, f"{who} daily {kind.replace('_', ' ')} budget: {_limit(kind, old)} → {_limit(kind, new)}."
        )

    @quota.command(name="role", description="Give a role its own per-member budget (or unlimited)")
    @app_commands.describe(
        role="The role", kind="Which budget",
        limit="Per-member daily limit for this role; -1 = unlimited; empty removes the override",
    )
    async def quota_role(
        self, interaction: discord.Interaction, role: discord.Role, kind: KindChoice, limit: float | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        try:
            old, new = await self.bot.quotas.set_role_limit(
                interaction.guild_id, role.id, kind, limit, interaction.user.id
            )
        except InvalidSetting as exc:
            await reply_privately(interaction, f"Not changed: {exc}")
            return
        label = "@everyone" if role.is_default() else f"@{role.name}"
        old_text = "no override" if old is None else _limit(kind, old)
        new_text = "no override (member default applies)" if new is None else _limit(kind, new)
        await reply_privately(
            interaction, f"{label} — daily {kind.replace('_', ' ')} per member: {old_text} → {new_text}."
        )

    @quota.command(name="reset-user", description="Give a member a fresh budget for today")
    @app_commands.describe(member="The member")
    async def quota_reset_user(self, interaction: discord.Interaction, member: discord.Member) -> None:
        assert interaction.guild_id is not None
        cleared = await self.bot.quotas.reset_user(interaction.guild_id, member.id, interaction.user.id)
        what = ", ".join(f"{_limit(k, v)} {k.replace('_', ' ')}" for k, v in cleared.items()) or "nothing used yet"
        await reply_privately(interaction, f"<@{member.id}> has a fresh budget for today (cleared: {what}).")

    # ------------------------------------------------------------------ /usage, /credits

    @app_commands.command(
        name="usage", description="Chart of daily use per feature against the budget, and top members"
    )
    @app_commands.describe(days="How many days (1-30, default 7)", member="Only this member")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.check(require_server_admin)
    async def usage(
        self, interaction: discord.Interaction, days: app_commands.Range[int, 1, 30] = 7,
        member: discord.Member | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        who = Requester.for_member(interaction.guild_id, member) if member is not None else None
        report = await self.bot.quotas.usage_report(interaction.guild_id, days, who)
        if member is not None:
            title = f"Daily use of {member.display_name} - last {days} day(s)"
            summary = f"Usage of <@{member.id}> over the last {days} day(s), against the per-member budget."
        else:
            title = (
                f"Daily use in {interaction.guild.name if interaction.guild else 'this server'} - last {days} day(s)"
            )
            summary = top_members_text(report.top)
        png = await render_usage_chart_async(report.series, report.budget, title)
        head = usage_totals_text(report.totals)
        answers = await self.bot.auto_answer.outcomes.stats(
            interaction.guild_id, since=_first_day_start(self.bot.quotas.now(), days),
            user_id=member.id if member is not None else None)
        if answers.answers:
            head += "\n" + auto_answers_text(answers)
        await reply_privately(
            interaction, f"{head}\n{summary}", file=discord.File(io.BytesIO(png), filename="usage.png")
        )

    @app_commands.command(name="credits", description="The AI gateway's credit balance")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.check(require_server_admin)
    async def credits(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            gateway, balance = await self.bot.quotas.credits(interaction.guild_id)
        except Unsupported:
            gateway = self.bot.gateways.peek(interaction.guild_id)
            if is_guild_client(gateway):
                text = (f"This server's own AI gateway (`{gateway.profile.name}`) has no balance endpoint: it does "
                        "not report a credit balance.")
            else:
                text = f"The AI gateway (`{gateway.profile.name}` profile) does not report a credit balance."
            await reply_privately(interaction, text)
            return
        except Exception as exc:
            gateway = self.bot.gateways.peek(interaction.guild_id)
            await reply_privately(interaction, "Could not read the credit balance: "
                                               + user_error_message(exc, gateway=gateway))
            return
        profile = gateway.profile.name
        own = is_guild_client(gateway)
        if balance.amount is None:
            which = f"This server's own AI gateway (`{profile}`)" if own else f"The AI gateway (`{profile}`)"
            await reply_privately(interaction, f"{which} answered without a balance figure.")
            return
        currency = f" {balance.currency}" if balance.currency else " credits"
        where = f"this server's own AI gateway, `{profile}`" if own else f"`{profile}`"
        await reply_privately(interaction, f"Gateway balance: **{balance.amount:,.4f}**{currency} ({where}).")

    # ------------------------------------------------------------------ /mylimits

    @everywhere
    @app_commands.command(name="mylimits", description="Your remaining daily budgets, and which ones apply here")
    async def mylimits(self, interaction: discord.Interaction) -> None:
        requester = Requester.from_interaction(interaction)
        limits = await self.bot.quotas.usage_limits(requester)
        reason = ""
        if requester.guild_id is None:
            reason = "this is a DM" if interaction.guild_id is None else "only you installed Gatecord in this server"
        tier = tier_text(await self.bot.premium.status(requester), in_server=requester.guild_id is not None)
        await reply_privately(interaction, mylimits_text(limits, self.bot.quotas.now(), reason=reason, tier=tier))


def _first_day_start(now: datetime, days: int) -> float:
    """Unix time of 00:00 UTC on the first of the ``days`` UTC days ending today (as the chart counts)."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days - 1)).timestamp()


def _limit(kind: str, value: float) -> str:
    return limit_text(kind, value)


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Admin(bot))
