"""``RelayService``: wires keys, rate limiter, outbox, delivery worker, HTTP handlers and metrics.

The factory builds one per bot (``bot.relay``), adds its routes to the web server before that starts,
``start()``s it once storage is open and ``stop()``s it (draining in-flight sends) on close. The relay
cog only turns /relay commands into calls on it.

``deliver=False`` (the web tier, ``gatecord web``): posts are accepted, stored and reported from the
database, and the ``gatecord run`` processes' workers deliver them; no Discord connection is needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import discord
from aiohttp import web

from bot.app.metrics import Metrics
from bot.app.settings import Settings
from bot.relay.api import ChannelInfo, ChannelScope, RelayApi
from bot.relay.directory import DatabaseChannelScope
from bot.relay.identity import avatar_problem, name_problem
from bot.relay.keyrules import BadExpiry, parse_expiry
from bot.relay.keys import KEY_PREFIX, KeyStore, NewKey, RelayKey
from bot.relay.metrics import RelayMetrics
from bot.relay.openapi import build_document
from bot.relay.outbox import Outbox, QueuedPost
from bot.relay.ratelimit import KeyRateLimiter, Pacer
from bot.relay.retention import RetentionSweeper
from bot.relay.transport import DiscordTransport, Transport
from bot.relay.worker import DeliveryWorker
from bot.storage.buckets import TokenBuckets
from bot.storage.store import Store

log = logging.getLogger(__name__)

MESSAGEABLE = (discord.TextChannel, discord.VoiceChannel, discord.StageChannel, discord.Thread)


class KeyRefused(Exception):
    """A /relay key create option is not acceptable; the message says which and why (for the admin)."""


class ClientChannelScope:
    """Channel facts from discord.py's cache (no REST call per post)."""

    def __init__(self, client: discord.Client) -> None:
        self.client = client

    async def ready(self) -> bool:
        return self.client.is_ready()

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        channel = self.client.get_channel(channel_id)
        guild = getattr(channel, "guild", None)
        if channel is None or guild is None:
            return None
        parent = channel.parent_id if isinstance(channel, discord.Thread) else None
        return ChannelInfo(guild.id, parent, isinstance(channel, MESSAGEABLE))


class RelayService:
    def __init__(
        self,
        client: discord.Client | None,
        store: Store,
        settings: Settings,
        *,
        deliver: bool = True,
        metrics: Metrics | None = None,
        version: str = "0.1.0",
        scope: ChannelScope | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``deliver``: run a delivery worker in this process (False: only accept and report posts).
        ``scope``/``transport`` replace the discord.py-backed ones (tests without Discord; without a
        client the scope is the ``discord_channels`` table); ``clock`` is the wall clock of the outbox
        timestamps and the retention sweep (tests move it), ``sleep`` how the worker waits between looks
        at the outbox. ``metrics`` is the bot's registry (its web server's, so ``/metrics`` shows the
        relay); None = a private one."""
        relay = settings.relay
        self.settings = settings
        self.store = store
        bot_metrics = metrics if metrics is not None else Metrics()
        self.metrics = RelayMetrics(bot_metrics.registry)
        bot_metrics.add_refresher("relay_queue_depth", self._collect_queue_depth)
        self.keys = KeyStore(store, clock=clock)
        buckets = TokenBuckets(store, clock=clock)  # shared by every process (rate_buckets)
        self.limiter = KeyRateLimiter(buckets, relay.rate_per_minute, relay.burst)
        retention, idempotency_window = relay.retention_days * 86400, relay.idempotency_hours * 3600
        self.outbox = Outbox(store, on_commit=self._committed, clock=clock, idempotency_window=idempotency_window)
        # many processes deliver on PostgreSQL: their pace is one bucket there (one process on SQLite)
        self.pacer = Pacer(relay.max_requests_per_second, buckets=buckets if store.dialect == "postgresql" else None)
        if scope is None:
            scope = ClientChannelScope(client) if client is not None else DatabaseChannelScope(store)
        self.transport: Transport | None = None
        self.worker: DeliveryWorker | None = None
        if deliver:
            if transport is None:
                if client is None:
                    raise ValueError("delivering relay posts needs a Discord client or a transport")
                transport = DiscordTransport(client, store, self.outbox, self.pacer,
                                             request_timeout=relay.request_timeout)
            self.transport = transport
            self.worker = DeliveryWorker(
                self.outbox, transport, self.metrics,
                concurrency=relay.workers, max_attempts=relay.max_attempts,
                retry_base_delay=relay.retry_base_delay, retry_max_delay=relay.retry_max_delay,
                poll_interval=relay.poll_interval, claim_timeout=relay.claim_timeout, clock=clock, sleep=sleep,
            )
        self.api = RelayApi(
            keys=self.keys, limiter=self.limiter, outbox=self.outbox, worker=self.worker,
            scope=scope, metrics=self.metrics,
            max_body_bytes=settings.http.max_body_bytes, wait_timeout=relay.wait_timeout,
            retention=retention, poll_interval=relay.poll_interval, clock=clock,
        )
        self.retention = RetentionSweeper(
            self.outbox, retention=retention, idempotency_window=idempotency_window, metrics=self.metrics, clock=clock,
        )
        self.document = build_document(version)
        self._started = False

    @property
    def delivers(self) -> bool:
        return self.worker is not None

    def _committed(self, posts: list[QueuedPost]) -> None:
        if self.worker is not None:
            self.worker.enqueue(posts)

    async def _collect_queue_depth(self) -> None:
        counts = await self.outbox.counts()
        for status in ("queued", "sending"):
            self.metrics.queue_depth.labels(status=status).set(counts.get(status, 0))
        # what the delivery workers (of every process) have yet to settle; 0 where nothing is delivered
        self.metrics.scheduled.set(sum(counts.values()) if self.worker is not None else 0)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """``/send-data`` and ``/openapi.json`` (before the web server starts: aiohttp freezes its router)."""
        self.api.add_routes(router)
        router.add_get("/openapi.json", self._openapi)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.document)

    # -- key management (what /relay key … does) ----------------------------------------------------
    async def create_key(
        self,
        guild_id: int,
        *,
        created_by: int,
        channel_ids: list[int],
        channels_from_creator: bool,
        name: str | None = None,
        allow_mentions: bool = False,
        avatar_url: str | None = None,
        custom_identity: bool = False,
        expires: str | None = None,
    ) -> NewKey:
        """Create a key posting to ``channel_ids`` (never empty: the cog passes the listed channels or,
        with ``channels_from_creator``, those its creator could post in). Raises ``KeyRefused`` (bad name,
        avatar or expiry), ``KeyNameTaken``, or ``KeyLimitReached`` at relay.max_keys_per_guild."""
        if name is not None and name.strip() and (problem := name_problem(name)) is not None:
            raise KeyRefused(f"`name`: {problem}, and posts appear under the key's name. Pick another name.")
        if avatar_url is not None and avatar_url.strip():
            avatar_url = avatar_url.strip()
            if (problem := avatar_problem(avatar_url)) is not None:
                raise KeyRefused(f"`avatar` {problem}.")
        else:
            avatar_url = None
        expires_in = None
        if expires is not None and expires.strip():
            try:
                expires_in = parse_expiry(expires)
            except BadExpiry as exc:
                raise KeyRefused(str(exc) + ".") from exc
        if not channel_ids:
            raise KeyRefused("the key would reach no channel: you cannot post in any channel of this server yourself.")
        return await self.keys.create(
            guild_id, name=name, created_by=created_by, channel_ids=channel_ids,
            channels_from_creator=channels_from_creator, allow_mentions=allow_mentions, avatar_url=avatar_url,
            custom_identity=custom_identity, expires_in=expires_in, max_keys=self.settings.relay.max_keys_per_guild,
        )

    async def find_key(self, guild_id: int, wanted: str) -> RelayKey | None:
        """An active key of this guild by name, by id, or by the full key text (``gcr_<id>_…``)."""
        wanted = wanted.strip()
        if wanted.startswith(KEY_PREFIX):
            wanted = wanted[len(KEY_PREFIX):].split("_", 1)[0]
        return await self.keys.find(guild_id, wanted)

    async def revoke_key(self, guild_id: int, key_id: str, *, revoked_by: int) -> None:
        """Revoke at once (its next post gets 401) and drop the key's rate-limit bucket."""
        await self.keys.revoke(guild_id, key_id, revoked_by=revoked_by)
        await self.limiter.forget(key_id)

    async def key_counts(self, key_id: str) -> dict[str, int]:
        """Posts sent with this key, by status (queued, sending, delivered, failed)."""
        return await self.outbox.key_counts(key_id)

    async def start(self) -> None:
        """Start the group-commit writer, the delivery worker (resuming undelivered posts) when this process
        delivers, and the retention sweep (a first pass right away, then hourly, one process at a time)."""
        if self._started:
            return
        self.outbox.start()
        if self.worker is not None:
            await self.worker.start()
        self.retention.start()
        self._started = True

    async def stop(self, grace: float = 5.0) -> None:
        """Store what is being accepted, let in-flight sends finish (up to ``grace`` s), stop the worker."""
        if not self._started:
            return
        self._started = False
        await self.retention.stop()
        await self.outbox.close()
        if self.worker is not None:
            await self.worker.stop(grace)
