"""Channel facts for the relay without a Discord connection: the ``discord_channels`` table.

``gatecord web`` holds no gateway connection, so it cannot ask discord.py's cache which guild a channel
belongs to. The ``gatecord run`` processes write the channels they see into ``discord_channels``
(``channel_id, guild_id, parent_id, messageable``); this scope reads it, caching each answer (also
"no such channel") for ``ttl`` seconds so a burst of posts to one channel costs one query.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.relay.api import ChannelInfo
from bot.storage.store import Store

CACHE_TTL = 5.0
CACHE_MAX = 50_000


class DatabaseChannelScope:
    """``api.ChannelScope`` over the ``discord_channels`` table (filled by the gateway processes)."""

    def __init__(
        self, store: Store, *, ttl: float = CACHE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._channels: dict[int, tuple[float, ChannelInfo | None]] = {}
        self._ready: tuple[float, bool] | None = None

    async def ready(self) -> bool:
        """True once a gateway process has written any channel (before that, every post would be a 403)."""
        now = self.clock()
        if self._ready is None or (not self._ready[1] and now - self._ready[0] > self.ttl):
            known = await self.store.fetchone("SELECT 1 FROM discord_channels LIMIT 1") is not None
            self._ready = (now, known)
        return self._ready[1]

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        now = self.clock()
        cached = self._channels.get(channel_id)
        if cached is not None and now - cached[0] <= self.ttl:
            return cached[1]
        row = await self.store.fetchone(
            "SELECT guild_id, parent_id, messageable FROM discord_channels WHERE channel_id = ?", (channel_id,)
        )
        info = None if row is None else ChannelInfo(
            int(row["guild_id"]), int(row["parent_id"]) if row["parent_id"] is not None else None,
            bool(row["messageable"]),
        )
        if len(self._channels) >= CACHE_MAX:
            self._channels.clear()
        self._channels[channel_id] = (now, info)
        return info
