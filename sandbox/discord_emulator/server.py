"""DiscordEmulator: the aiohttp application, its middleware (auth, faults, rate limits, recording),
the default world, and the state helpers shared by the REST, gateway and injection modules."""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, TypeVar, Union

from aiohttp import web

from . import limits as L
from . import permissions as P
from .bodies import FILES, JSON_BODY, read_body
from .cdn import CDN
from .changes import ChangeSignal
from .commands import CommandRegistry
from .access import inaccessible_target
from .errors import MISSING_ACCESS as E_MISSING_ACCESS
from .errors import APIError, json_response
from .gateway_ws import Gateway
from .injection import InjectionMixin
from .messages import MessageStore
from .models import InteractionRecord, MessageState, RateLimitHit, RecordedRequest, Role, User
from .monetization import Monetization
from .ratelimit import RateLimiter, route_matches
from .rest import rest_routes
from .rest_interactions import interaction_routes
from .snowflake import SnowflakeFactory
from .validation import MessageValidator, SchemaValidator
from .webhooks import ChannelWebhooks
from .world import World

log = logging.getLogger(__name__)
T = TypeVar("T")
API_PREFIX = "/api/v10"
# Application flags: GATEWAY_GUILD_MEMBERS_LIMITED | GATEWAY_MESSAGE_CONTENT_LIMITED | APPLICATION_COMMAND_BADGE
DEFAULT_APPLICATION_FLAGS = (1 << 15) | (1 << 19) | (1 << 23)
STABLE_WORLD_MS = 1_704_067_200_000  # 2024-01-01T00:00Z: the time the stable world's ids are made at


@dataclass
class InjectedError:
    route_substring: str
    status: int
    code: int
    message: str
    count: int


class DiscordEmulator(InjectionMixin):
    """An emulated Discord (REST + gateway + CDN) on 127.0.0.1 for the real discord.py client.

    See the package docstring for the full public API.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "emulator-token",
        schemas_path: Optional[Union[str, Path]] = None,
        shards: int = 1,
        max_concurrency: int = 1,
        clock: Optional[Callable[[], float]] = None,
        stable_ids: bool = False,
    ) -> None:
        """``shards``: the count ``GET /gateway/bot`` recommends; ``max_concurrency``: IDENTIFY buckets it
        announces (bucket = shard_id % max_concurrency); ``clock``: the time each IDENTIFY is recorded at
        (``emu.gateway.identifies``; monotonic by default); ``stable_ids``: the default world (users,
        guilds, roles, channels) gets the same ids on every run, so that a database kept from an earlier
        run (the sandbox's) still points at them. Messages and interactions always get new ids."""
        if shards < 1 or max_concurrency < 1:
            raise ValueError("shards and max_concurrency must be at least 1")
        self.host = host
        self.port = port
        self._token = token
        self.ids = SnowflakeFactory()
        self.signal = ChangeSignal()
        self.world = World(self.ids)
        self.store = MessageStore(self.world, self.ids, self._attachment_url)
        self.monetization = Monetization(self)
        self.validator = MessageValidator(
            SchemaValidator(Path(schemas_path) if schemas_path else None), known_skus=lambda: set(self.monetization.skus)
        )
        self.ratelimits = RateLimiter()
        self.gateway = Gateway(self)
        if clock is not None:
            self.gateway.clock = clock
        self.recommended_shards = shards
        self.max_concurrency = max_concurrency
        self.session_start_total = L.SESSION_START_TOTAL
        self.cdn = CDN(self)
        self.channel_webhooks = ChannelWebhooks(self)
        self.requests: list[RecordedRequest] = []
        #: every request answered 403 50001 Missing Access (a guild the bot is not in, a channel it cannot see)
        self.forbidden_calls: list[RecordedRequest] = []
        self.user_installs: set[int] = set()  # users who installed the app to their account
        self.rate_limited: list[RateLimitHit] = []
        self.injected_errors: list[InjectedError] = []
        self.interactions: dict[int, InteractionRecord] = {}
        self.interactions_by_token: dict[str, InteractionRecord] = {}
        self.interaction_ack_deadline = L.INTERACTION_ACK_DEADLINE_S
        self.interaction_token_ttl = L.INTERACTION_TOKEN_TTL_S
        self.default_attachment_size_limit = L.ATTACHMENT_SIZE_LIMIT_DEFAULT
        self.typing: list[tuple[int, float]] = []  # (channel_id, monotonic)
        self.application_flags = DEFAULT_APPLICATION_FLAGS
        self._runner: Optional[web.AppRunner] = None
        self._base = ""
        if stable_ids:
            with self.ids.pinned(STABLE_WORLD_MS):
                self._build_default_world()
        else:
            self._build_default_world()
        self.commands = CommandRegistry(self.application_id, self.ids)

    def __repr__(self) -> str:  # never shows the token
        return f"<DiscordEmulator {self._base or 'not started'}>"

    @property
    def token(self) -> str:
        return self._token

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> "DiscordEmulator":
        app = web.Application(client_max_size=64 * L.MIB, middlewares=[self._middleware])
        app.router.add_routes(
            rest_routes(self) + interaction_routes(self) + self.channel_webhooks.routes() + self.monetization.routes()
        )
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_routes(self.cdn.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self._base = f"http://{self.host}:{self.port}"
        return self

    async def close(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "DiscordEmulator":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return self._base

    @property
    def api_base_url(self) -> str:
        return f"{self._base}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def cdn_base_url(self) -> str:
        return f"{self._base}/cdn"

    def _attachment_url(self, channel_id: int, attachment_id: int, filename: str) -> str:
        return f"{self.cdn_base_url}/attachments/{channel_id}/{attachment_id}/{filename}"

    # -- default world ---------------------------------------------------------------------
    def _build_default_world(self) -> None:
        w = self.world
        bot = w.add_user("Gatecord", bot=True, global_name=None)
        self.bot_user_id = bot.id
        self.application_id = bot.id
        admin, alice, bob = w.add_user("admin"), w.add_user("alice"), w.add_user("bob")
        self.users: dict[str, User] = {"admin": admin, "alice": alice, "bob": bob, "bot": bot}

        # The two guilds land on different shards of two (guild 1 on shard 0, guild 2 on shard 1); with
        # one shard, as by default, that changes nothing.
        g1 = w.add_guild("Gatecord Test", owner_id=admin.id, shard=(0, 2))
        self.guild_id = g1.id
        self.admin_role_id = w.add_role(g1.id, "Admin", P.ADMIN_ROLE).id
        self.moderator_role_id = w.add_role(g1.id, "Moderator", P.MODERATOR_ROLE).id
        self.bot_role_id = w.add_role(g1.id, "Gatecord", P.BOT_ROLE, managed=True).id
        w.add_member(g1.id, admin.id, [self.admin_role_id])
        w.add_member(g1.id, alice.id)
        w.add_member(g1.id, bob.id)
        w.add_member(g1.id, bot.id, [self.bot_role_id])
        self.channel_id = w.add_channel(g1.id, "general", topic="General chat").id
        self.channel2_id = w.add_channel(g1.id, "random").id
        self.thread_id = w.add_channel(g1.id, "general-thread", type=11, parent_id=self.channel_id, owner_id=alice.id).id

        g2 = w.add_guild("Other Guild", owner_id=admin.id, shard=(1, 2))
        self.guild2_id = g2.id
        self.guild2_admin_role_id = w.add_role(g2.id, "Admin", P.ADMIN_ROLE).id
        self.guild2_bot_role_id = w.add_role(g2.id, "Gatecord", P.BOT_ROLE, managed=True).id
        w.add_member(g2.id, admin.id, [self.guild2_admin_role_id])
        w.add_member(g2.id, alice.id)
        w.add_member(g2.id, bob.id)
        w.add_member(g2.id, bot.id, [self.guild2_bot_role_id])
        self.other_guild_channel_id = w.add_channel(g2.id, "lobby").id
        # made last, so every id above stays what it was before forums existed
        self.forum_channel_id = w.add_channel(g1.id, "help", type=15, topic="One post per question").id

    # -- world helpers (dispatch the matching gateway events) ------------------------------
    def user(self, ref: Union[str, int, User]) -> User:
        return self.world.user(ref)

    async def add_user(
        self, username: str, *, guild_ids: Optional[list[int]] = None, roles: Optional[list[int]] = None, bot: bool = False
    ) -> User:
        """New user (another bot with ``bot``), made a member of ``guild_ids`` (default: guild 1) with ``roles``."""
        user = self.world.add_user(username, bot=bot)
        self.users[username] = user
        for gid in guild_ids if guild_ids is not None else [self.guild_id]:
            await self.add_member(gid, user.id, roles=[r for r in roles or [] if r in self.world.guilds[gid].roles])
        return user

    async def add_guild(
        self,
        name: str,
        *,
        shard: Optional[tuple[int, int]] = None,
        members: tuple[str, ...] = ("alice", "bob"),
        bot_member: bool = True,
    ) -> int:
        """A guild the bot has joined (dispatches GUILD_CREATE to the session holding it): "admin" owns it
        with an Admin role, ``members`` are plain members, the bot has its managed role, and one text
        channel #general (the guild's default channel for ``inject_*``). ``shard=(shard_id, shard_count)``
        puts its id on that shard: ``(guild_id >> 22) % shard_count == shard_id``. Returns its id.

        ``bot_member=False``: the bot is not in it (no GUILD_CREATE, no events from it, 403 50001 on every
        REST call about it); members reach the app there only through a user install
        (``install_for_user``) and the interactions it brings."""
        w = self.world
        admin = self.users["admin"]
        guild = w.add_guild(name, owner_id=admin.id, shard=shard)
        admin_role = w.add_role(guild.id, "Admin", P.ADMIN_ROLE)
        w.add_member(guild.id, admin.id, [admin_role.id])
        for name_ in members:
            w.add_member(guild.id, self.users[name_].id)
        if bot_member:
            bot_role = w.add_role(guild.id, "Gatecord", P.BOT_ROLE, managed=True)
            w.add_member(guild.id, self.bot_user_id, [bot_role.id])
        w.add_channel(guild.id, "general")
        if bot_member:
            await self.gateway.dispatch("GUILD_CREATE", w.guild_create_payload(guild.id))
        return guild.id

    # -- user installs and private channels ------------------------------------------------
    def install_for_user(self, user: Union[str, int, User]) -> None:
        """The user installs the app to their account: global commands with ``integration_types``
        containing 1 now work for them in every guild (the bot's or not), their DM with the bot and
        private channels, per the command's ``contexts``."""
        self.user_installs.add(self.world.user(user).id)
        self.signal.changed()

    def uninstall_for_user(self, user: Union[str, int, User]) -> None:
        self.user_installs.discard(self.world.user(user).id)
        self.signal.changed()

    def is_installed_for(self, user: Union[str, int, User]) -> bool:
        return self.world.user(user).id in self.user_installs

    def dm_channel_id(self, user: Union[str, int, User] = "alice") -> int:
        """The DM channel between ``user`` and the bot (type 1, no guild), created on first use; the
        bot's POST /users/@me/channels answers the same channel."""
        uid = self.world.user(user).id
        channel = self.world.find_dm(uid, self.bot_user_id) or self.world.add_private_channel([uid, self.bot_user_id])
        return channel.id

    def private_channel_id(self, users: tuple[Union[str, int, User], ...] = ("alice", "bob"), *, name: str = "") -> int:
        """A group DM of ``users`` (type 3, no guild; the bot is not in it, and cannot be): the app is
        reachable there only through user-install interactions (context 2). Created on first use for
        the same set of users."""
        ids = [self.world.user(u).id for u in users]
        if self.bot_user_id in ids:
            raise ValueError("a bot cannot be in a group DM")
        for channel in self.world.channels.values():
            if channel.type == 3 and set(channel.recipient_ids) == set(ids):
                return channel.id
        return self.world.add_private_channel(ids, group=True, name=name).id

    def bot_is_member(self, guild_id: int) -> bool:
        guild = self.world.guilds.get(guild_id)
        return guild is not None and self.bot_user_id in guild.members

    def bot_receives(self, event: str, data: dict[str, Any]) -> bool:
        """Discord sends the bot no event of a guild it is not in, nor of a DM it is not part of;
        interactions reach it wherever the app was used."""
        if event == "INTERACTION_CREATE":
            return True
        guild_id = self.gateway.event_guild(event, data)
        if guild_id is not None:
            return guild_id not in self.world.guilds or self.bot_is_member(guild_id)
        raw = data.get("channel_id")
        channel = self.world.channels.get(int(raw)) if raw is not None else None
        return channel is None or self.world.can_access(self.bot_user_id, channel)

    async def add_member(self, guild_id: int, user_id: int, roles: Optional[list[int]] = None) -> None:
        self.world.add_member(guild_id, user_id, roles)
        payload = dict(self.world.member_payload(guild_id, user_id), guild_id=str(guild_id))
        await self.gateway.dispatch("GUILD_MEMBER_ADD", payload)

    async def set_member_roles(self, guild_id: int, user_id: int, roles: list[int]) -> None:
        self.world.guilds[guild_id].members[user_id].roles = list(roles)
        payload = dict(self.world.member_payload(guild_id, user_id), guild_id=str(guild_id))
        await self.gateway.dispatch("GUILD_MEMBER_UPDATE", payload)

    async def add_role(self, name: str, permissions: int = 0, *, guild_id: Optional[int] = None) -> Role:
        gid = guild_id or self.guild_id
        role = self.world.add_role(gid, name, permissions)
        await self.gateway.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(gid), "role": role.payload()})
        return role

    async def add_channel(
        self, name: str, *, guild_id: Optional[int] = None, type: int = 0, parent_id: Optional[int] = None, topic: Optional[str] = None
    ) -> int:
        gid = guild_id or self.guild_id
        channel = self.world.add_channel(gid, name, type=type, parent_id=parent_id, topic=topic, owner_id=self.users["admin"].id)
        event = "THREAD_CREATE" if channel.is_thread else "CHANNEL_CREATE"
        data = channel.payload()
        if channel.is_thread:
            data["newly_created"] = True
        await self.gateway.dispatch(event, data)
        return channel.id

    async def delete_channel(self, channel_id: int) -> None:
        """Delete a channel (CHANNEL_DELETE; its threads go with it, without an event each, as on Discord)
        or a thread (THREAD_DELETE)."""
        w = self.world
        channel = w.channels[channel_id]
        gone = [channel_id] + [c.id for c in w.channels.values() if c.is_thread and c.parent_id == channel_id]
        guild = w.guilds[channel.guild_id] if channel.guild_id is not None else None
        for cid in gone:
            w.channels.pop(cid, None)
            if guild is not None and cid in guild.channel_ids:
                guild.channel_ids.remove(cid)
        if channel.is_thread:
            await self.gateway.dispatch("THREAD_DELETE", {
                "id": str(channel.id), "guild_id": str(channel.guild_id), "parent_id": str(channel.parent_id),
                "type": channel.type})
        else:
            await self.gateway.dispatch("CHANNEL_DELETE", channel.payload())

    async def archive_thread(self, thread_id: int) -> None:
        """Archive a thread (THREAD_UPDATE with ``thread_metadata.archived``)."""
        thread = self.world.channels[thread_id]
        thread.archived = True
        await self.gateway.dispatch("THREAD_UPDATE", thread.payload())

    async def remove_guild(self, guild_id: int) -> None:
        """The bot is removed from a guild (GUILD_DELETE without ``unavailable``); the guild leaves the world."""
        await self.gateway.dispatch("GUILD_DELETE", {"id": str(guild_id)})
        guild = self.world.guilds.pop(guild_id)
        for cid in guild.channel_ids:
            self.world.channels.pop(cid, None)

    async def set_channel_permissions(
        self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0, is_member: Optional[bool] = None
    ) -> None:
        """Add a permission overwrite (role or member; guessed from the id when not given)."""
        if is_member is None:
            is_member = target_id in self.world.users
        self.world.set_overwrite(channel_id, target_id, type=1 if is_member else 0, allow=allow, deny=deny)
        await self.gateway.dispatch("CHANNEL_UPDATE", self.world.channels[channel_id].payload())

    async def deny_bot(self, channel_id: int, permission_bit: int) -> None:
        """Deny the bot ``permission_bit`` in one channel (a member overwrite, merged with any the bot
        already has there), e.g. ``await emu.deny_bot(cid, permissions.SEND_VOICE_MESSAGES)``."""
        current = next((o for o in self.world.channels[channel_id].overwrites if o.type == 1 and o.id == self.bot_user_id), None)
        allow = (current.allow if current else 0) & ~permission_bit
        deny = (current.deny if current else 0) | permission_bit
        await self.set_channel_permissions(channel_id, self.bot_user_id, allow=allow, deny=deny, is_member=True)

    async def grant_bot_permissions(self, permissions: int, *, guild_id: Optional[int] = None) -> None:
        """Add permissions to the bot's managed role (e.g. permissions.MANAGE_WEBHOOKS for the relay)."""
        for gid in [guild_id] if guild_id else list(self.world.guilds):
            guild = self.world.guilds[gid]
            role = next(r for r in guild.roles.values() if r.managed and r.id in guild.members[self.bot_user_id].roles)
            role.permissions |= permissions
            await self.gateway.dispatch("GUILD_ROLE_UPDATE", {"guild_id": str(gid), "role": role.payload()})

    def permissions_for(self, user: Union[str, int, User], channel_id: int) -> int:
        return self.world.permissions_for(self.world.user(user).id, channel_id)

    # -- monetization (sandbox.discord_emulator.monetization) --------------------------------
    def add_sku(self, sku_id: int, name: str, *, type: int = 5, flags: int = 1 << 7) -> dict[str, Any]:
        """An SKU of the application (5 SUBSCRIPTION, 3 CONSUMABLE, 2 DURABLE; flags 1 << 7 guild
        subscription, 1 << 8 user subscription), listed by ``GET /applications/{app}/skus``."""
        return self.monetization.add_sku(sku_id, name, type=type, flags=flags)

    async def grant_entitlement(
        self,
        sku_id: int,
        *,
        guild_id: Optional[int] = None,
        user_id: Optional[int] = None,
        dispatch: bool = True,
        type: Optional[int] = None,
        ends_at: Optional[datetime.datetime] = None,
    ) -> dict[str, Any]:
        """A new entitlement (type 8 for a subscription SKU, else 1); ENTITLEMENT_CREATE to the
        guild's shard (a user's: shard 0) unless ``dispatch=False`` (a missed event)."""
        return await self.monetization.grant(
            sku_id, guild_id=guild_id, user_id=user_id, dispatch=dispatch, type=type, ends_at=ends_at
        )

    async def end_entitlement(self, entitlement_id: int, *, dispatch: bool = True, delete: bool = False) -> dict[str, Any]:
        """Ends it now (ENTITLEMENT_UPDATE with ``ends_at``) or deletes it (ENTITLEMENT_DELETE,
        ``deleted: true``, as for a refund)."""
        return await self.monetization.end(entitlement_id, dispatch=dispatch, delete=delete)

    async def redispatch_entitlement(self, entitlement_id: int) -> None:
        """The same ENTITLEMENT_CREATE again (a duplicate delivery)."""
        await self.monetization.redispatch(entitlement_id)

    async def buy(self, sku_id: int, *, user: Union[str, int, User] = "alice", guild_id: Optional[int] = None) -> dict[str, Any]:
        """A member buys an SKU in Discord's store (the page's "buy"; clicking a premium button):
        guild-subscription SKUs (flag 1 << 7, consumables too) go to ``guild_id`` with the buyer,
        others to the buyer alone. ValueError when the store would refuse (already owned, a consumable
        not consumed yet, a guild SKU bought outside a guild)."""
        return await self.monetization.buy(sku_id, user_id=self.world.user(user).id, guild_id=guild_id)

    @property
    def entitlements(self) -> dict[int, dict[str, Any]]:
        return self.monetization.entitlements

    @property
    def consume_calls(self) -> list[int]:
        return self.monetization.consume_calls

    def premium_buttons(self, message: Union[int, MessageState]) -> list[int]:
        """The SKU ids of a message's premium buttons."""
        msg = message if isinstance(message, MessageState) else self.store.messages[message]
        return self.monetization.premium_buttons(msg.components)

    # -- commands --------------------------------------------------------------------------
    def global_commands(self) -> list[dict[str, Any]]:
        """Global application commands as registered (with ids, options, default_member_permissions)."""
        return self.commands.list(None)

    def guild_commands(self, guild_id: Optional[int] = None) -> list[dict[str, Any]]:
        return self.commands.list(guild_id or self.guild_id)

    # -- messages --------------------------------------------------------------------------
    @property
    def messages(self) -> dict[int, MessageState]:
        return self.store.messages

    def channel_messages(self, channel_id: int, *, include_deleted: bool = False, include_ephemeral: bool = True) -> list[MessageState]:
        """Messages of a channel in creation order (ephemeral interaction replies included)."""
        return self.store.channel_messages(channel_id, include_deleted=include_deleted, include_ephemeral=include_ephemeral)

    def bot_messages(self, channel_id: Optional[int] = None) -> list[MessageState]:
        return [
            m
            for m in self.store.messages.values()
            if m.author_id == self.bot_user_id and not m.deleted and (channel_id is None or m.channel_id == channel_id)
        ]

    def message_payload(self, msg: MessageState, *, with_referenced: bool = True) -> dict[str, Any]:
        meta = self._interaction_meta(msg.interaction_id) if msg.interaction_id else None
        return self.store.payload(msg, with_referenced=with_referenced, interaction=meta)

    def _interaction_meta(self, interaction_id: Optional[int]) -> Optional[dict[str, Any]]:
        rec = self.interactions.get(interaction_id or 0)
        if rec is None:
            return None
        meta: dict[str, Any] = {
            "id": str(rec.id),
            "type": rec.type,
            "user": self.world.users[rec.user_id].payload(),
            "authorizing_integration_owners": rec.authorizing_integration_owners,
        }
        if rec.name:
            meta["name"] = rec.name
            meta["command_type"] = 1
        if rec.message_id:
            meta["interacted_message_id"] = str(rec.message_id)
        return meta

    async def announce(self, event: str, msg: MessageState) -> None:
        """Dispatch MESSAGE_CREATE/UPDATE/DELETE for a message (never for ephemeral ones)."""
        if msg.ephemeral:
            self.signal.changed()
            return
        if event == "MESSAGE_DELETE":
            data: dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id:
                data["guild_id"] = str(msg.guild_id)
        else:
            data = self.message_payload(msg)
            if msg.guild_id and msg.author_id in self.world.guilds[msg.guild_id].members and msg.webhook_id is None:
                data["member"] = self.world.member_payload(msg.guild_id, msg.author_id, with_user=False)
        await self.gateway.dispatch(event, data)

    # -- waiting ---------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait (without polling) until ``predicate()`` is truthy; returns its value."""
        return await self.signal.wait_for(predicate, timeout)

    async def wait_for_message(
        self, predicate: Callable[[MessageState], Any], timeout: float = 10.0
    ) -> MessageState:
        """First live message (in creation order) matching ``predicate``."""

        def find() -> Optional[MessageState]:
            return next((m for m in self.store.messages.values() if not m.deleted and predicate(m)), None)

        return await self.signal.wait_for(find, timeout)

    async def wait_until_connected(self, timeout: float = 10.0) -> None:
        """Wait until the bot has an identified, connected gateway session."""
        await self.signal.wait_for(lambda: bool(self.gateway.ready_sessions), timeout)

    async def wait_for_session(self, timeout: float = 10.0) -> None:
        """Wait until the bot has identified once (events for a dropped session are buffered for RESUME)."""
        await self.signal.wait_for(lambda: any(s.ready for s in self.gateway.sessions.values()), timeout)

    async def drop_gateway(self, code: int = 4000) -> int:
        """Close the bot's websocket(s); 4000 lets discord.py RESUME."""
        return await self.gateway.drop_connections(code)

    # -- fault injection -------------------------------------------------------------------
    def inject_rate_limit(self, route_substring: str, count: int = 1, retry_after: float = 0.5, is_global: bool = False) -> None:
        """The next ``count`` requests whose path (or "METHOD path") contains the substring get a 429."""
        self.ratelimits.inject(route_substring, count, retry_after, is_global)

    def inject_error(self, route_substring: str, status: int, code: int = 0, message: str = "Injected error", count: int = 1) -> None:
        """The next ``count`` matching requests get ``status`` with Discord's error JSON."""
        self.injected_errors.append(InjectedError(route_substring, status, code, message, count))

    def set_rate_limits(self, *, enabled: Optional[bool] = None, scale: Optional[float] = None) -> None:
        """Turn bucket/global enforcement off, or scale every window (0.1 = ten times shorter)."""
        if enabled is not None:
            self.ratelimits.enabled = enabled
        if scale is not None:
            self.ratelimits.scale = scale

    def configure_bucket(self, bucket: str, limit: int, per: float) -> None:
        """Bucket names: message_create, message_edit, message_delete, webhook, typing, thread_create,
        commands, or "global" (the 50/s limit that interaction endpoints are exempt from)."""
        if bucket == "global":
            self.ratelimits.global_limit = (limit, per)
            self.ratelimits.reset()
        else:
            self.ratelimits.configure(bucket, limit, per)

    def expire_interaction(self, rec: InteractionRecord) -> None:
        """Age the interaction's token past 15 minutes: its webhook calls now get 401 50027."""
        rec.token_expired = True

    def requests_to(self, route_substring: str, method: Optional[str] = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (route_substring in r.path or route_substring in r.route) and (method is None or r.method == method)
        ]

    def _take_injected_error(self, method: str, path: str) -> Optional[InjectedError]:
        for inj in self.injected_errors:
            if inj.count > 0 and route_matches(inj.route_substring, method, path):
                inj.count -= 1
                self.injected_errors = [i for i in self.injected_errors if i.count > 0]
                return inj
        return None

    # -- middleware ------------------------------------------------------------------------
    def _auth_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = f"Bot {self._token}"
        return secrets.compare_digest(header.encode(), expected.encode())

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        path = request.path[len(API_PREFIX):]
        resource = request.match_info.route.resource
        route = resource.canonical[len(API_PREFIX):] if resource is not None and resource.canonical.startswith(API_PREFIX) else path
        rec = RecordedRequest(
            method=request.method, path=path, route=route, query=dict(request.query), json=None, files=[], at=time.monotonic(),
            peer=request.transport.get_extra_info("peername") if request.transport is not None else None,
        )
        self.requests.append(rec)
        response: web.StreamResponse
        try:
            response = await self._handle_api(request, handler, rec, path, route)
        finally:
            self.gateway.renotify()
        return response

    async def _handle_api(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        rec: RecordedRequest,
        path: str,
        route: str,
    ) -> web.StreamResponse:
        headers: dict[str, str] = {}
        try:
            body, files = await read_body(request)
            rec.json = body
            rec.files = [{"index": f.index, "filename": f.filename, "size": len(f.data), "content_type": f.content_type} for f in files]
            request[JSON_BODY] = body
            request[FILES] = files
            exc = request.match_info.http_exception
            token_route = route.startswith("/interactions/") or route.startswith("/webhooks/{webhook_id}/{webhook_token}")
            if exc is not None and exc.status != 404:
                raise APIError(exc.status, 0, f"{exc.status}: {exc.reason}")
            if not token_route and not self._auth_ok(request):
                raise APIError(401, 0, "401: Unauthorized")
            if not token_route and inaccessible_target(self, path):  # any route, known or not
                raise APIError(403, E_MISSING_ACCESS, "Missing Access")
            if exc is not None:
                raise APIError(exc.status, 0, f"{exc.status}: {exc.reason}")
            decision = self.ratelimits.check(request.method, path, route, dict(request.match_info))
            headers = decision.headers
            if decision.limited:
                assert decision.retry_after is not None
                rec.rate_limited = True
                self.rate_limited.append(
                    RateLimitHit(
                        method=request.method,
                        path=path,
                        route=route,
                        bucket=decision.bucket,
                        retry_after=decision.retry_after,
                        is_global=decision.is_global,
                        scope=decision.scope,
                        injected=decision.injected,
                        at=time.monotonic(),
                    )
                )
                rec.status, rec.response = 429, decision.body()
                return json_response(decision.body(), status=429, headers=headers)
            injected = self._take_injected_error(request.method, path)
            if injected is not None:
                raise APIError(injected.status, injected.code, injected.message)
            response = await handler(request)
        except APIError as err:
            rec.status, rec.response = err.status, err.body()
            if err.status == 403 and err.code == E_MISSING_ACCESS:
                self.forbidden_calls.append(rec)
            return json_response(err.body(), status=err.status, headers=headers)
        for key, value in headers.items():
            response.headers[key] = value
        rec.status = response.status
        rec.response = getattr(response, "_emulator_json", None)
        return response

    def json(self, data: Any, status: int = 200) -> web.Response:
        """JSON response that also remembers its body for ``emu.requests``."""
        resp = json_response(data, status=status)
        resp._emulator_json = data  # type: ignore[attr-defined]
        return resp
