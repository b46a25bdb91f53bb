"""/relay key create|list|revoke: Discord input into calls on the relay service (``bot.relay``),
and the result into an ephemeral reply. The service (HTTP routes, delivery worker) belongs to the
bot, so reloading this cog leaves the relay running.

Key commands are for members with Manage Server: hidden through default_member_permissions and
checked again at run time. A new key is shown once, ephemerally; only its hash is stored.
"""

from __future__ import annotations

import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.guilds.permissions import ADMIN_PERMISSIONS, require_server_admin
from bot.relay.keys import NAME_MAX, KeyNameTaken, RelayKey
from bot.rendering.replies import reply_privately

log = logging.getLogger(__name__)

_CHANNEL_TOKEN = re.compile(r"<#(\d+)>|(\d{15,21})|#?([^\s,<>#]+)")


def parse_channels(guild: discord.Guild, text: str) -> tuple[list[int], list[str]]:
    """Channel mentions, ids or names → (ids of this guild's text channels/threads, tokens not understood)."""
    ids: list[int] = []
    unknown: list[str] = []
    for match in _CHANNEL_TOKEN.finditer(text):
        mention, raw_id, name = match.groups()
        channel: discord.abc.GuildChannel | discord.Thread | None = None
        if mention or raw_id:
            channel = guild.get_channel_or_thread(int(mention or raw_id))
        elif name:
            channel = (
                discord.utils.get(guild.channels, name=name.lower()) or discord.utils.get(guild.threads, name=name)
            )
        if channel is None or isinstance(channel, (discord.CategoryChannel, discord.ForumChannel)):
            unknown.append(match.group(0))
        elif channel.id not in ids:
            ids.append(channel.id)
    return ids, unknown


def describe_key(key: RelayKey) -> str:
    channels = " ".join(f"<#{c}>" for c in key.channel_ids) if key.channel_ids else "any channel"
    used = f"<t:{key.last_used_at}:R>" if key.last_used_at else "never"
    return (
        f"**{discord.utils.escape_markdown(key.name)}** `gcr_{key.key_id}_…` — {channels} — mentions "
        f"{'allowed' if key.allow_mentions else 'off'} — created <t:{key.created_at}:R> by <@{key.created_by}> — "
        f"last used {used}"
    )


class Relay(commands.Cog):
    relay = app_commands.Group(
        name="relay", description="The HTTP relay (/send-data) that lets outside systems post here",
        guild_only=True, default_permissions=ADMIN_PERMISSIONS,
    )
    key = app_commands.Group(name="key", description="Create, list and revoke relay API keys", parent=relay)

    def __init__(self, bot: GatecordBot) -> None:
        self.bot = bot
        self.service = bot.relay

    @key.command(name="create", description="Create a relay key (shown once) for posting into this server over HTTP")
    @app_commands.describe(
        name="A name to recognise the key by (default: key-<id>)",
        channels="Channels the key may post to (#alerts #shop); empty = every channel of this server",
        allow_mentions="Let posts ping users/roles named in their allowed_mentions (default: never ping)",
    )
    @app_commands.check(require_server_admin)
    async def create(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, NAME_MAX] | None = None,
        channels: str | None = None,
        allow_mentions: bool = False,
    ) -> None:
        guild = interaction.guild
        assert guild is not None
        channel_ids: list[int] = []
        if channels:
            channel_ids, unknown = parse_channels(guild, channels)
            if unknown:
                await reply_privately(
                    interaction,
                    f"These are not text channels of this server: {', '.join(unknown)}. No key was created.",
                )
                return
        try:
            new = await self.service.keys.create(
                guild.id, name=name, created_by=interaction.user.id, channel_ids=channel_ids,
                allow_mentions=allow_mentions,
            )
        except KeyNameTaken:
            await reply_privately(
                interaction,
                f"A key named **{discord.utils.escape_markdown(name or '')}** already exists; "
                "pick another name or revoke it first.",
            )
            return
        where = " ".join(f"<#{c}>" for c in channel_ids) if channel_ids else "any channel of this server"
        example_channel = channel_ids[0] if channel_ids else interaction.channel_id
        await reply_privately(
            interaction,
            f"Relay key **{discord.utils.escape_markdown(new.record.name)}** created. "
            f"Copy it now — it is shown only once:\n"
            f"```\n{new.secret}\n```"
            f"Posts to: {where}. Mentions: {'allowed (from allowed_mentions)' if allow_mentions else 'never ping'}.\n"
            f"Use it against this bot's web server:\n"
            f"```\ncurl -X POST <bot-url>/send-data -H 'Authorization: Bearer <key>' "
            f"-H 'Content-Type: application/json' "
            f"-d '{{\"channelId\": \"{example_channel}\", \"content\": \"Hello\"}}'\n```"
            f"Revoke it any time with `/relay key revoke`.",
        )
        log.info(
            "relay key %s (%s) created in guild %s by %s",
            new.record.key_id, new.record.name, guild.id, interaction.user.id,
        )

    @key.command(name="list", description="List this server's relay keys")
    @app_commands.check(require_server_admin)
    async def list_keys(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        keys = await self.service.keys.list(interaction.guild_id)
        if not keys:
            await reply_privately(
                interaction, "This server has no active relay keys. Create one with `/relay key create`."
            )
            return
        lines = [f"**Relay keys** ({len(keys)}):"]
        for key in keys:
            counts = await self.service.key_counts(key.key_id)
            line = (f"• {describe_key(key)} — delivered {counts['delivered']}, failed {counts['failed']}, "
                    f"waiting {counts['queued'] + counts['sending']}")
            if sum(len(x) + 1 for x in lines) + len(line) > 1900:
                lines.append(f"…and {len(keys) - len(lines) + 1} more")
                break
            lines.append(line)
        await reply_privately(interaction, "\n".join(lines))

    @key.command(name="revoke", description="Revoke a relay key at once (its posts get 401)")
    @app_commands.describe(key="The key's name (or its id, the part after gcr_)")
    @app_commands.check(require_server_admin)
    async def revoke(self, interaction: discord.Interaction, key: str) -> None:
        assert interaction.guild_id is not None
        record = await self.service.find_key(interaction.guild_id, key)
        if record is None:
            await reply_privately(
                interaction, f"No active relay key named **{discord.utils.escape_markdown(key)}** in this server."
            )
            return
        await self.service.revoke_key(interaction.guild_id, record.key_id, revoked_by=interaction.user.id)
        await reply_privately(
            interaction,
            f"Relay key **{discord.utils.escape_markdown(record.name)}** revoked: it now gets 401. "
            "Posts it sent before are still delivered.",
        )
        log.info("relay key %s revoked in guild %s by %s", record.key_id, interaction.guild_id, interaction.user.id)

    @revoke.autocomplete("key")
    async def _revoke_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            return []
        keys = await self.service.keys.list(interaction.guild_id)
        current = current.lower()
        return [
            app_commands.Choice(name=f"{k.name} (gcr_{k.key_id}_…)"[:100], value=k.key_id)
            for k in keys if current in k.name.lower() or current in k.key_id
        ][:25]


async def setup(bot: GatecordBot) -> None:
    await bot.add_cog(Relay(bot))
