"""``create_bot(settings)``: builds every service and connects nothing.

``setup_hook`` opens storage (migrating), the gateway session, loads every cog in ``cogs/``, starts
the web server and syncs the commands; ``drain()`` stops taking new work and lets the work in
progress finish while Discord and the store are still reachable; ``close()`` drains (when nobody
did) and shuts all of it down in reverse order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import pkgutil
import time

import aiohttp
import discord
import yarl
from discord.ext import commands

from bot.app import logging_setup
from bot.app.discord_pacing import DiscordPacer, interaction_exempt
from bot.app.guild_commands import GuildCommands
from bot.app.identify_gate import DatabaseIdentifyGate
from bot.app.readiness import database_check
from bot.app.settings import FallbackGateway, GatewaySettings, Settings
from bot.app.sharding import IdentifyGate, describe_shards, held_shards
from bot.app.tree import GatecordTree
from bot.app.web import WebServer
from bot.auto_answer.service import AutoAnswerService
from bot.budgets.rules import Feature
from bot.budgets.service import BudgetService
from bot.chat.service import ChatService
from bot.chat.tools.registry import ToolRegistry
from bot.gateways.directory import GatewayDirectory
from bot.gateways.secrets import SecretBox
from bot.gateways.service import GuildGatewayService
from bot.gateways.store import GuildGatewayStore
from bot.guilds.config import GuildConfig
from bot.knowledge.service import KnowledgeService
from bot.media.service import MediaJobService
from bot.premium.service import PremiumService
from bot.relay.directory import CacheThenDirectoryScope, ChannelDirectory, DatabaseChannelScope
from bot.relay.service import ClientChannelScope, RelayService
from bot.rendering.errors import error_code
from bot.rendering.replies import NO_MENTIONS
from bot.storage.buckets import TokenBuckets
from bot.storage.store import Store
from bot.vision.service import VisionService
from bot.voice.service import VoiceService
from gateway_client import ClientOptions, GatewayClient, GatewayConfig

log = logging.getLogger(__name__)

VERSION = "0.1.0"
COGS_PACKAGE = "cogs"


def apply_discord_urls(settings: Settings) -> None:
    """Point discord.py at the configured REST base, websocket gateway and CDN (proxy or emulator)."""
    discord.http.Route.BASE = settings.discord.api_base_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord.gateway_url)
    discord.asset.Asset.BASE = settings.discord.cdn_base_url.rstrip("/")


def _gateway_config(section: GatewaySettings | FallbackGateway) -> GatewayConfig:
    return GatewayConfig(
        profile=section.profile,
        base_url=section.base_url,
        api_key=section.api_key.get_secret_value(),
        chat_model=section.chat_model,
        vision_model=section.vision_model,
        image_model=section.image_model,
    )


def build_gateway_client(settings: Settings) -> GatewayClient:
    g = settings.gateway
    primary = dataclasses.replace(_gateway_config(g), video_model=g.video_model, music_model=g.music_model)
    fallbacks = [_gateway_config(f) for f in g.fallbacks]
    options = ClientOptions(
        connect_timeout=g.connect_timeout,
        total_timeout=g.total_timeout,
        stream_idle_timeout=g.stream_idle_timeout,
        max_retries=g.max_retries,
        max_download_bytes=g.max_download_bytes,
        fallback_models=list(g.fallback_models),
    )
    return GatewayClient(primary, fallbacks=fallbacks, options=options)


def discover_cogs(package: str = COGS_PACKAGE) -> list[str]:
    """Every module in ``cogs/`` that defines an extension ``setup``; private modules are helpers."""
    pkg = importlib.import_module(package)
    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        names.append(f"{package}.{info.name}")
    return sorted(names)


class GatecordBot(commands.AutoShardedBot):
    """Holds the shards of ``[discord] shard_count`` / ``shard_ids`` (one process, Discord's
    recommended count, when they are unset)."""

    def __init__(self, settings: Settings) -> None:
        # Gatecord never joins voice channels (its voice messages are files): discord.py's warnings
        # about missing voice libraries would only confuse whoever reads the start-up log.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.default()
        intents.message_content = True
        # Every request discord.py sends waits for a token of one process-wide budget (Discord's 50/s
        # global limit); interaction callbacks and webhooks, which Discord does not count, go at once.
        pacer = DiscordPacer(exempt=interaction_exempt(lambda: self.application_id))
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=NO_MENTIONS,
            guild_ready_timeout=settings.discord.guild_ready_timeout,
            tree_cls=GatecordTree,
            # A command is a server's (installed there, used there) unless its cog offers it everywhere
            # (cogs/_installs.py: /chat, /vision … also in DMs and, for a member's own install, anywhere).
            allowed_contexts=discord.app_commands.AppCommandContext(guild=True, dm_channel=False,
                                                                    private_channel=False),
            allowed_installs=discord.app_commands.AppInstallationType(guild=True, user=False),
            # A bounded, reused pool: a burst of commands then shares a few kept-alive connections
            # instead of opening one per deferral (measured in bench/chat_load.py: ack p99 about
            # 80 ms against about 150 ms unbounded). aiohttp builds it on the running event loop.
            connector=aiohttp.TCPConnector(limit=settings.discord.http_connections),
            http_trace=pacer.trace_config(),
            shard_count=settings.discord.shard_count,
            # None (its default: every shard) is what discord.py's options type leaves out
            shard_ids=settings.discord.shard_ids,  # type: ignore[arg-type]
        )
        #: set by whoever coordinates IDENTIFY across processes; None: discord.py's own pacing
        self.identify_gate: IdentifyGate | None = None
        self.discord_pacer = pacer
        self.settings = settings
        self.version = VERSION
        self.started_at = time.monotonic()
        self.store = Store.from_settings(settings.storage)  # SQLite file, or PostgreSQL with [storage] url
        if self.store.dialect == "postgresql":  # many processes: the budget is one bucket in the database
            pacer.buckets = TokenBuckets(self.store)
            # and IDENTIFY turns are shared by every process (max_concurrency: Discord's, learnt in connect())
            self.identify_gate = DatabaseIdentifyGate(
                TokenBuckets(self.store), interval=settings.discord.identify_interval_seconds)
        self.gateway = build_gateway_client(settings)  # the operator's gateway ([gateway])
        # the guilds' own gateways, their keys encrypted with [secrets] key (none configured: none can be set)
        box = SecretBox.from_setting(settings.secrets.key.get_secret_value())
        self.guild_gateways = GuildGatewayStore(self.store, box)
        # the client that serves a guild: the operator's, or the guild's own (/gateway set)
        self.gateways = GatewayDirectory(
            self.gateway, load=self.guild_gateways.load if settings.guild_gateways.enabled else None,
            public_only=not settings.guild_gateways.allow_private_addresses)
        self.web = WebServer(settings.http.host, settings.http.port, max_body_bytes=settings.http.max_body_bytes,
                             limits=settings.http)
        # budgets: one service (engine, reports, admin writes, prices, expiry sweep); codes as the ledger shows them
        self.quotas = BudgetService(self.store, settings, gateway=self.gateway, error_code=error_code,
                                    gateways=self.gateways)
        # premium tiers ([premium]): a ceiling over the admins' limits, entitlement events, reconciliation
        self.premium = PremiumService(self.store, settings, client=self)
        self.premium.attach(self.quotas)
        self.guild_config = GuildConfig(self.store, settings, self.gateway, gateways=self.gateways)
        # media jobs (images, edits, video, music): queues, budget flow, progress, delivery, restart recovery
        # (the cogs only adapt Discord)
        self.media_jobs = MediaJobService(settings, self.store, self.gateway, self.quotas, self.guild_config, self,
                                          gateways=self.gateways)
        # the commands a server gets from its own gateway (what the operator's lacks), added per guild
        self.guild_commands = GuildCommands(self, guild_ids=self._own_gateway_guilds)
        self.web.add_readiness_check("database", self._database_ready)
        self.web.add_readiness_check("discord", self._discord_ready)
        self.web.add_readiness_check("accepting", self._accepting_ready)
        self._drain: asyncio.Future[str] | None = None
        # PostgreSQL: other processes hold other guilds (and `gatecord web` none), so this process records
        # what its shards see in the shared channel directory (cogs/channel_directory.py) and checks relay
        # posts against its own cache first, then the directory. SQLite (one process): its cache alone.
        shared = self.store.dialect == "postgresql"
        self.channel_directory = ChannelDirectory(self.store) if shared else None
        scope = CacheThenDirectoryScope(ClientChannelScope(self), DatabaseChannelScope(self.store)) if shared else None
        # The relay's routes go on the web server now: aiohttp freezes its router when it starts.
        self.relay = RelayService(self, self.store, settings, metrics=self.web.metrics, version=VERSION, scope=scope)
        self.relay.add_routes(self.web.router)
        self.relay.pacer.share_client_budget(pacer.rate)  # relay posts take their turn in the one budget above
        self.commands_synced = False
        self._cdn_http: aiohttp.ClientSession | None = None
        self.chat = ChatService(settings, self.store, self.gateway, self.quotas, self.guild_config,
                                cdn_http=lambda: self.cdn_http, gateways=self.gateways)
        self.chat.runner.pressure = pacer  # streaming skips intermediate edits while the budget is congested
        self.vision = VisionService(settings, self.chat, cdn_http=lambda: self.cdn_http)
        self.chat.vision = self.vision
        # voice messages: transcription and speech (cogs/voice.py registers what the gateway offers)
        self.voice = VoiceService(settings, self.gateway, self.quotas, cdn_http=lambda: self.cdn_http,
                                  http=lambda: self.http, gateways=self.gateways)
        self.chat.voice = self.voice
        # the server knowledge base: documents embedded and searched per guild (cogs/knowledge.py registers
        # its commands only where the gateway offers embeddings)
        self.knowledge = KnowledgeService(settings, self.store, self.gateway, self.quotas,
                                          cdn_http=lambda: self.cdn_http, gateways=self.gateways)
        # auto-answer in help channels: new posts answered from the knowledge base (a chat turn of the poster's)
        self.auto_answer = AutoAnswerService(self.store, self.chat, self.guild_config,
                                             min_score=settings.knowledge.answer_min_score)
        self.auto_answer.knowledge = self.knowledge
        # tools in chat (bot/chat/tools/): the knowledge base, /imagine jobs, polls, the channel, voice
        self.chat.tools = ToolRegistry.build(gateway=self.gateway, knowledge=lambda: getattr(self, "knowledge", None),
                                             media_jobs=self.media_jobs, voice=self.voice,
                                             ledger=lambda requester, name, outcome: self.quotas.charge_after(
                                                 requester, Feature.TOOL, model=name, outcome=outcome))
        # /gateway set|show|remove|fallback: checks a server's own gateway before saving it
        self.guild_gateway_admin = self._guild_gateway_admin(settings)

    def _guild_gateway_admin(self, settings: Settings) -> GuildGatewayService:
        section = settings.guild_gateways

        async def refresh(guild_id: int) -> None:
            self.premium.invalidate(guild_id=guild_id)  # its own gateway: no tier ceiling (or back to one)
            await self.guild_commands.refresh(guild_id)

        return GuildGatewayService(
            self.guild_gateways, self.gateways, self.guild_config,
            allow_private_addresses=section.allow_private_addresses,
            check_timeout=section.check_timeout,
            refresh=refresh,
            # keys typed in /gateway set are masked in the log from the start, even one that fails the check
            mask=logging_setup.mask_secret,
        )

    @property
    def cdn_http(self) -> aiohttp.ClientSession:
        """One pooled session for downloading Discord attachments (callers check ``discord.cdn_hosts``)."""
        if self._cdn_http is None:
            raise RuntimeError("the bot is not set up yet")
        return self._cdn_http

    async def login(self, token: str) -> None:
        apply_discord_urls(self.settings)
        await super().login(token)

    async def connect(self, *, reconnect: bool = True) -> None:
        if self.shard_count is None:
            # Discord's recommended count, asked here so that the shards still connect to the configured
            # discord.gateway_url (discord.py would take the URL from this same answer instead).
            self.shard_count, _url, limits = await self.http.get_bot_gateway()
            self._set_max_concurrency(limits["max_concurrency"])
        elif isinstance(self.identify_gate, DatabaseIdentifyGate):
            try:
                self._set_max_concurrency((await self.fetch_session_start_limits()).max_concurrency)
            except (discord.GatewayNotFound, discord.HTTPException) as exc:
                log.warning("Discord's session start limits could not be read (%s): IDENTIFYs go one at a time", exc)
        await super().connect(reconnect=reconnect)

    def _set_max_concurrency(self, max_concurrency: int) -> None:
        """The IDENTIFY buckets Discord allows this bot (``session_start_limit.max_concurrency``)."""
        if isinstance(self.identify_gate, DatabaseIdentifyGate) and max_concurrency >= 1:
            self.identify_gate.max_concurrency = max_concurrency

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Every IDENTIFY waits here: for ``identify_gate`` when one is set, else discord.py's own
        pacing (5 s between this process's IDENTIFYs)."""
        if self.identify_gate is None:
            await super().before_identify_hook(shard_id, initial=initial)
        else:
            await self.identify_gate.wait_turn(shard_id or 0)

    async def setup_hook(self) -> None:
        await self.store.open()
        await self.relay.start()  # resumes undelivered posts from the outbox
        await self.gateway.start()
        await self.quotas.start()  # sweep of expired reservations, published prices
        await self.premium.start()  # entitlements reconciled now and every [premium] reconcile_hours
        await self.media_jobs.start()  # jobs a previous run left: unknown/failed (never resubmitted), or resumed
        self._cdn_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, sock_connect=10))
        await self.chat.start()
        await self.knowledge.start()  # the vector search path (sqlite-vec, pgvector or exact)
        for extension in discover_cogs():
            await self.load_extension(extension)
        await self.web.start()
        await self.sync_commands()
        # servers with their own gateway: the commands it offers (each synced by the process holding its shard)
        await self.guild_commands.refresh_all()

    async def sync_commands(self) -> None:
        guilds = self.settings.discord.command_guilds
        if guilds:
            for guild_id in guilds:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        self.commands_synced = True
        log.info("application commands synced (%s)", f"guilds {guilds}" if guilds else "global")

    async def _own_gateway_guilds(self) -> list[int]:
        """The guilds with their own gateway (none while [guild_gateways] is disabled: the operator's serves all)."""
        if not self.settings.guild_gateways.enabled or not self.store.is_open:
            return []
        return list(await self.guild_gateways.guild_ids())

    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self._record_guild(guild)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._record_guild(guild)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        if self.store.is_open:
            await self.store.execute(
                "UPDATE guilds SET left_at = ? WHERE guild_id = ?", (int(time.time()), guild.id)
            )

    async def _record_guild(self, guild: discord.Guild) -> None:
        if self.store.is_open:
            await self.store.execute(
                "INSERT INTO guilds(guild_id, name, joined_at) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET name = excluded.name, left_at = NULL",
                (guild.id, guild.name, int(time.time())),
            )

    async def drain(self, seconds: float | None = None) -> str:
        """Stop taking new work, let the work in progress finish (for up to ``seconds``, default
        ``shutdown.drain_seconds``), then cut off what is left; returns (and logs) one line saying
        what was drained. Runs once: later calls wait for the first.

        At once: new turns, /vision and /imagine get "the bot is restarting", new relay posts 503
        (``/ready`` turns false). Then, side by side: answers in progress (their final edit included)
        and media jobs run to the end, and the relay's in-flight deliveries finish; queued posts stay
        in the outbox for the next start. Discord and the store stay open throughout.
        """
        if self._drain is None:
            seconds = self.settings.shutdown.drain_seconds if seconds is None else seconds
            self.chat.stop_accepting()  # before anything else can run: nothing new slips in
            self.media_jobs.stop_accepting()
            self.relay.api.stop_accepting()
            log.info("draining: new turns, /imagine and relay posts are refused; work in progress gets up to %g s",
                     seconds)
            self._drain = asyncio.ensure_future(self._drain_work(seconds))
        return await asyncio.shield(self._drain)

    async def _drain_work(self, seconds: float) -> str:
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def flush_relay() -> None:
            try:  # in-flight sends finish while discord.py's HTTP session is still open
                await self.relay.stop(grace=seconds)
            except Exception:
                log.exception("relay: stopping the delivery worker failed")

        answers, jobs, _ = await asyncio.gather(
            self.chat.drain(seconds), self.media_jobs.drain(seconds), flush_relay())
        left = await self.relay.outbox.counts() if self.store.is_open else {}
        summary = (
            f"drained in {loop.time() - began:.1f} s: answers {answers.finished} finished, {answers.cancelled} "
            f"cut off; media jobs {jobs.finished} finished, {jobs.cancelled} cut off; relay: in-flight deliveries "
            f"done, {left.get('queued', 0)} queued and {left.get('sending', 0)} interrupted post(s) kept for the "
            "next start"
        )
        log.info(summary)
        return summary

    async def close(self) -> None:
        try:
            if self.store.is_open or self._drain is not None:  # nothing to drain before set-up
                await self.drain()
        except Exception:
            log.exception("draining before closing failed")
        await self.media_jobs.close()  # whatever is left (the start-up recovery notices)
        try:
            await self.relay.stop()  # a no-op once drained
        except Exception:
            log.exception("relay: stopping the delivery worker failed")
        try:
            await super().close()
        finally:
            await self.web.close()
            if self._cdn_http is not None:
                await self._cdn_http.close()
                self._cdn_http = None
            await self.premium.close()
            await self.quotas.close()
            await self.chat.close()  # the start-up read of the models' context windows, if still running
            await self.gateways.close()
            await self.gateway.close()
            await self.store.close()
            await self.discord_pacer.close()

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_at

    async def _database_ready(self) -> tuple[bool, str]:
        return await database_check(self.store)

    async def _accepting_ready(self) -> tuple[bool, str]:
        if self._drain is None:
            return True, "accepting new work"
        return False, "draining before it stops: new work is refused"

    async def _discord_ready(self) -> tuple[bool, str]:
        """Ready when every shard this process holds is connected (and discord.py has its servers)."""
        held = held_shards(self.shard_ids, self.shard_count)
        if held is None or self.shard_count is None:
            return False, "not connected to Discord (asking it how many shards to run)"
        closed = self.is_closed()
        connected = {i for i, info in self.shards.items() if not closed and not info.is_closed()}
        limited = {i for i, info in self.shards.items() if i in connected and info.is_ws_ratelimited()}
        ok, detail = describe_shards(held, self.shard_count, connected, rate_limited=limited, latency=self.latency)
        if ok and not self.is_ready():
            return False, f"{detail}; still receiving their servers"
        return ok, detail


def create_bot(settings: Settings) -> GatecordBot:
    """Build the bot and its services (inside the running event loop); nothing connects until ``start()``."""
    return GatecordBot(settings)
