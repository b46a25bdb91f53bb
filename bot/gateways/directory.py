"""``GatewayDirectory``: the gateway client that serves a guild.

A guild without its own gateway (and every DM / user-install request, guild id 0 or None) is served
by the operator's client, built from ``[gateway]``. A guild that set its own (``/gateway set``) gets a
client of its own: its profile, base URL, key and default models, the operator's timeouts and retry
policy, and no fallback gateway unless its admin allowed the operator's (then the operator's primary
and fallbacks follow, as a fallback; an authentication failure never falls back, see
``gateway_client.client``). Guild clients are labelled ``guild:<profile>`` (``GatewayConfig.name``),
so call metadata and the ledger say which gateway served, and error wording can tell them apart.

Rows are read through ``load`` (the store) and kept ``ttl`` seconds: a change made in this process is
seen at once (``invalidate``), one made by another process within ``ttl``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway_client import GatewayClient, GatewayConfig

__all__ = ["GUILD_LABEL_PREFIX", "GuildGateway", "GatewayDirectory", "is_guild_client", "DIRECTORY_TTL_SECONDS"]

GUILD_LABEL_PREFIX = "guild:"
DIRECTORY_TTL_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class GuildGateway:
    """A guild's own gateway as stored (the key decrypted; never logged: ``GatewayConfig`` hides it)."""

    guild_id: int
    config: GatewayConfig
    allow_operator_fallback: bool = False
    #: when it was last changed (a new value means a new client)
    updated_at: float = 0.0


Loader = Callable[[int], Awaitable[GuildGateway | None]]


def is_guild_client(client: object) -> bool:
    """True for a guild's own gateway (its label starts with ``guild:``); anything without a config (a
    test's stand-in) is the operator's."""
    label = getattr(getattr(client, "config", None), "label", "")
    return isinstance(label, str) and label.startswith(GUILD_LABEL_PREFIX)


class GatewayDirectory:
    def __init__(self, operator: GatewayClient, load: Loader | None = None, *, ttl: float = DIRECTORY_TTL_SECONDS,
                 public_only: bool = True, monotonic: Callable[[], float] = time.monotonic) -> None:
        """``public_only``: guild clients reach their gateway on public addresses only, checked at every
        connection (``[guild_gateways] allow_private_addresses`` turns it off, for emulators on loopback)."""
        self.operator = operator
        self.public_only = public_only
        self._load = load
        self.ttl = ttl
        self._monotonic = monotonic
        #: guild -> (read at, the row's updated_at or None, its client or None for the operator's)
        self._cache: dict[int, tuple[float, float | None, GatewayClient | None]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._retired: list[GatewayClient] = []
        self._closing: set[asyncio.Future[None]] = set()

    async def for_guild(self, guild_id: int | None) -> GatewayClient:
        """The client serving ``guild_id`` (the operator's for None/0 and for guilds without their own)."""
        if not guild_id or self._load is None:
            return self.operator
        cached = self._cache.get(guild_id)
        if cached is not None and self._monotonic() - cached[0] < self.ttl:
            return cached[2] or self.operator
        lock = self._locks.setdefault(guild_id, asyncio.Lock())
        async with lock:
            cached = self._cache.get(guild_id)
            if cached is not None and self._monotonic() - cached[0] < self.ttl:
                return cached[2] or self.operator
            started = self._monotonic()
            row = await self._load(guild_id)
            client = cached[2] if cached is not None else None
            if row is None:
                self._retire(client)
                client = None
            elif cached is None or cached[1] != row.updated_at or client is None:
                self._retire(client)
                client = self._build(row)
                if self.operator.started:
                    await client.start()
            self._cache[guild_id] = (started, row.updated_at if row else None, client)
            return client or self.operator

    def peek(self, guild_id: int | None) -> GatewayClient:
        """The client last seen for ``guild_id`` without reading the store (sync callers: a capability
        check in an autocomplete); the operator's when the guild was never looked up."""
        cached = self._cache.get(guild_id or 0)
        return (cached[2] if cached is not None else None) or self.operator

    def has_own(self, guild_id: int | None) -> bool:
        """Whether the guild was last seen with its own gateway (see ``peek``)."""
        return self.peek(guild_id) is not self.operator

    def invalidate(self, guild_id: int) -> None:
        """Read the guild's row again on its next request (after this process changed it)."""
        cached = self._cache.pop(guild_id, None)
        if cached is not None:
            self._retire(cached[2])

    def _build(self, row: GuildGateway) -> GatewayClient:
        config = row.config
        name = config.name if config.name.startswith(GUILD_LABEL_PREFIX) else f"{GUILD_LABEL_PREFIX}{config.profile}"
        config = dataclasses.replace(config, name=name, public_only=self.public_only)
        fallbacks: list[GatewayConfig] = []
        if row.allow_operator_fallback:
            fallbacks = [self.operator.config, *self.operator.fallback_configs]
        return GatewayClient(config, fallbacks=fallbacks, options=self.operator.options)

    def _retire(self, client: GatewayClient | None) -> None:
        """A replaced client is closed once a call still using it can have finished (or with the directory)."""
        if client is None:
            return
        self._retired.append(client)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        grace = client.options.total_timeout + 5.0
        loop.call_later(grace, lambda: self._close_retired(client))

    def _close_retired(self, client: GatewayClient) -> None:
        if client in self._retired:
            self._retired.remove(client)
            task = asyncio.ensure_future(client.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every guild client (the operator's is closed by its owner)."""
        clients = [c for _, _, c in self._cache.values() if c is not None] + self._retired
        self._cache.clear()
        self._retired = []
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
