"""/relay key create|list|revoke: Discord input into calls on the relay service (``bot.relay``),
and the result into an ephemeral reply. The service (HTTP routes, delivery worker) belongs to the
bot, so reloading this cog leaves the relay running.

Key commands are for members with Manage Server: hidden through default_member_permissions and
checked again at run time. A new key is shown once, ephemerally; only its hash is stored. A key
reaches no channel its creator cannot post in (see bot.relay.keyrules), posts appear under its name
and avatar (see bot.relay.identity), and it may expire.
"""

from __future__ import annotations

import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.guilds.permissions import ADMIN_PERMISSIONS, require_server_admin
from bot.relay.keyrules import can_post, postable_channels
from bot.relay.keys import NAME_MAX, KeyLimitReached, KeyNameTaken, RelayKey
from bot.relay.service import KeyRefused
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


def _channel(guild: discord.Guild, channel_id: int) -> discord.abc.GuildChannel | discord.Thread:
    channel = guild.get_channel_or_thread(channel_id)
    assert channel is not None  # parse_channels found it in this guild's cache
    return channel


def describe_channels(key: RelayKey) -> str:
    if not key.channel_ids:
        return "any channel (made before keys were scoped; make a new key to scope it)"
    shown = " ".join(f"<#{c}>" for c in key.channel_ids[:5])
    more = f" +{len(key.channel_ids) - 5} more" if len(key.channel_ids) > 5 else ""
    origin = f" (those <@{key.created_by}> could post in at creation)" if key.channels_from_creator else ""
    return f"{shown}{more}{origin}"


def describe_expiry(key: RelayKey, now: float) -> str:
    if key.expires_at is None:
        return "never expires"
    return f"{'expired' if key.expired(now) else 'expires'} <t:{key.expires_at}:R>"


def describe_key(key: RelayKey, now: float) -> str:
    used = f"<t:{key.last_used_at}:R>" if key.last_used_at else "never"
    identity = "per-post name/avatar allowed" if key.custom_identity else "posts under its name"
    if key.avatar_url:
        identity += " and avatar"
    return (
        f"**{discord.utils.escape_markdown(key.name)}** `gcr_{key.key_id}_…` — {describe_channels(key)} — "
        f"{identity} — mentions {'allowed' if key.allow_mentions else 'off'} — {describe_expiry(key, now)} — "
        f"created <t:{key.created_at}:R> by <@{key.created_by}> — last used {used}"
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
        name="The name posts appear under, and to recognise the key by (default: key-<id>)",
        channels="Channels the key may post to (#alerts #shop); empty = the channels you can post in now",
        allow_mentions="Let posts ping users/roles named in their allowed_mentions (default: never ping)",
        avatar="https:// URL of the avatar posts appear with (default: the relay webhook's)",
        custom_identity="Let each post set its own username/avatar_url (default: always the key's name)",
        expires="When the key stops working: 1h, 7d, 30d, 2w… (default: never)",
    )
    @app_commands.check(require_server_admin)
    async def create(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, NAME_MAX] | None = None,
        channels: str | None = None,
        allow_mentions: bool = False,
        avatar: str | None = None,
        custom_identity: bool = False,
        expires: str | None = None,
    ) -> None:
        guild = interaction.guild
        assert guild is not None
        member = interaction.user if isinstance(interaction.user, discord.Member) else guild.get_member(
            interaction.user.id)
        if member is None:
            await reply_privately(interaction, "I cannot see your server permissions right now; try again shortly.")
            return
        if channels:
            channel_ids, unknown = parse_channels(guild, channels)
            if unknown:
                await reply_privately(
                    interaction,
                    f"These are not text channels of this server: {', '.join(unknown)}. No key was created.",
                )
                return
            closed = [c for c in channel_ids if not can_post(_channel(guild, c), member)]
            if closed:
                await reply_privately(
                    interaction,
                    f"You cannot post in {' '.join(f'<#{c}>' for c in closed)} yourself, so a key of yours may not "
                    "either. No key was created.",
                )
                return
        else:
            channel_ids = postable_channels(guild, member)
        try:
            new = await self.service.create_key(
                guild.id, name=name, created_by=interaction.user.id, channel_ids=channel_ids,
                channels_from_creator=not channels, allow_mentions=allow_mentions, avatar_url=avatar,
                custom_identity=custom_identity, expires=expires,
            )
        except KeyRefused as exc:
            await reply_privately(interaction, f"{exc} No key was created.")
            return
        except KeyNameTaken:
            await reply_privately(
                interaction,
                f"A key named **{discord.utils.escape_markdown(name or '')}** already exists; "
                "pick another name or revoke it first.",
            )
            return
        except KeyLimitReached as exc:
            await reply_privately(
                interaction,
                f"This server already has {exc.limit} active relay keys, the limit (relay.max_keys_per_guild). "
                "Revoke one with `/relay key revoke` first. No key was created.",
            )
            return
        record = new.record
        where = describe_channels(record)
        if not channels:
            where = f"the {len(channel_ids)} channel(s) you can post in now: {where}"
        identity = (
            "each post may set its own username/avatar_url (else the key's name)" if custom_identity
            else f"posts appear as **{discord.utils.escape_markdown(record.name)}**"
            + (" with the avatar you gave" if record.avatar_url else "")
        )
        base = self.bot.web.public_url or "<bot-url>"
        where_hint = "" if self.bot.web.public_url else \
            " (`[http] public_url` in the bot's configuration fills in <bot-url>)"
        await reply_privately(
            interaction,
            f"Relay key **{discord.utils.escape_markdown(record.name)}** created. "
            f"Copy it now — it is shown only once:\n"
            f"```\n{new.secret}\n```"
            f"Posts to: {where}. Identity: {identity}. "
            f"Mentions: {'allowed (from allowed_mentions)' if allow_mentions else 'never ping'}. "
            f"{describe_expiry(record, self.service.keys.clock()).capitalize()}.\n"
            f"Use it against this bot's web server{where_hint}:\n"
            f"```\ncurl -X POST {base}/send-data -H 'Authorization: Bearer <key>' "
            f"-H 'Content-Type: application/json' "
            f"-d '{{\"channelId\": \"{channel_ids[0]}\", \"content\": \"Hello\"}}'\n```"
            f"Revoke it any time with `/relay key revoke`.",
        )
        log.info(
            "relay key %s (%s) created in guild %s by %s",
            record.key_id, record.name, guild.id, interaction.user.id,
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
        now = self.service.keys.clock()
        lines = [f"**Relay keys** ({len(keys)}):"]
        for key in keys:
            counts = await self.service.key_counts(key.key_id)
            line = (f"• {describe_key(key, now)} — delivered {counts['delivered']}, failed {counts['failed']}, "
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
