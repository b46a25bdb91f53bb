"""The channel directory: which guild each Discord channel is in, shared by every process through the
database (``discord_channels``).

The relay checks a post's channel against its key (``ChannelScope``). A ``gatecord run`` process knows
only the guilds of its own shards, and ``gatecord web`` knows none, so on PostgreSQL:

- ``ChannelDirectory`` is the writer: each run process records what its shards see (every channel and
  thread of a guild when it becomes available or is joined, then each channel or thread created,
  changed or deleted, and a guild left);
- ``DatabaseChannelScope`` is the reader (``gatecord web``): a lookup in that table behind a small
  in-memory cache with a short time to live (a post to a channel created a moment ago on another
  process may be refused for up to ``ttl`` seconds; one to a channel deleted a moment ago is accepted
  and then fails to deliver);
- ``CacheThenDirectoryScope``: a run process asks its own discord.py cache first, then the directory.

What the directory holds mirrors discord.py's cache (what ``ClientChannelScope`` sees in one process):
text, voice, stage and forum channels, categories (recorded as not messageable), and active threads
and forum posts; an archived thread leaves the cache, so it leaves the directory too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import discord

from bot.relay.api import ChannelInfo, ChannelScope
from bot.storage.errors import StorageError
from bot.storage.store import Store

log = logging.getLogger(__name__)

__all__ = ["CACHE_TTL", "CacheThenDirectoryScope", "ChannelDirectory", "DatabaseChannelScope", "channel_entry"]

#: seconds a looked-up channel (or its absence) is remembered by a reader
CACHE_TTL = 5.0
#: channels a reader remembers at most (the least recently used go first)
CACHE_ENTRIES = 10_000
MESSAGEABLE = (discord.TextChannel, discord.VoiceChannel, discord.StageChannel, discord.Thread)

_UPSERT = (
    "INSERT INTO discord_channels(channel_id, guild_id, parent_id, messageable, updated_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (channel_id) DO UPDATE SET guild_id = excluded.guild_id, parent_id = excluded.parent_id,"
    " messageable = excluded.messageable, updated_at = excluded.updated_at"
)

Entry = tuple[int, ChannelInfo]


def channel_entry(channel: Any) -> Entry | None:
    """``(channel_id, ChannelInfo)`` for a guild channel or thread (the parent only for a thread, as the
    key check reads it); None for anything outside a guild."""
    guild = getattr(channel, "guild", None)
    if guild is None:
        return None
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    return channel.id, ChannelInfo(guild.id, parent, isinstance(channel, MESSAGEABLE))


class ChannelDirectory:
    """Writes what this process's shards see into ``discord_channels``. A write that fails is logged
    (one warning line) and left for the next event or start: the directory is a cache of Discord."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def _row(self, channel_id: int, info: ChannelInfo) -> tuple[int, int, int | None, int, float]:
        return (channel_id, info.guild_id, info.parent_id, int(info.messageable), float(self.clock()))

    async def replace_guild(self, guild: discord.Guild) -> int:
        """Record every channel and thread of ``guild`` known here, and forget its others; returns how many."""
        entries = [e for c in (*guild.channels, *guild.threads) if (e := channel_entry(c)) is not None]
        rows = [self._row(channel_id, info) for channel_id, info in entries]
        keep = {row[0] for row in rows}

        async def write() -> None:
            async with self.store.transaction() as tx:
                stored = await tx.fetchall("SELECT channel_id FROM discord_channels WHERE guild_id = ?", (guild.id,))
                gone = [(r[0],) for r in stored if r[0] not in keep]
                if gone:
                    await tx.executemany("DELETE FROM discord_channels WHERE channel_id = ?", gone)
                if rows:
                    await tx.executemany(_UPSERT, rows)

        await self._write(f"recording the channels of guild {guild.id}", write)
        return len(rows)

    async def upsert(self, channel: Any) -> None:
        """A channel or thread created or changed."""
        entry = channel_entry(channel)
        if entry is not None:
            await self._write(f"recording channel {entry[0]}", lambda: self.store.execute(_UPSERT, self._row(*entry)))

    async def thread_changed(self, event: discord.RawThreadUpdateEvent) -> None:
        """A thread changed (also one this process had not seen): kept while active, forgotten once archived."""
        metadata = event.data.get("thread_metadata") or {}
        if metadata.get("archived"):
            await self.remove_thread(event.thread_id)
            return
        info = ChannelInfo(event.guild_id, event.parent_id, True)
        await self._write(f"recording thread {event.thread_id}",
                          lambda: self.store.execute(_UPSERT, self._row(event.thread_id, info)))

    async def remove_channel(self, channel_id: int) -> None:
        """A channel deleted: it and its threads (Discord deletes them with it, without an event each)."""
        await self._write(f"forgetting channel {channel_id}", lambda: self.store.execute(
            "DELETE FROM discord_channels WHERE channel_id = ? OR parent_id = ?", (channel_id, channel_id)))

    async def remove_thread(self, thread_id: int) -> None:
        """A thread deleted, or archived (it leaves discord.py's cache too)."""
        await self._write(f"forgetting thread {thread_id}", lambda: self.store.execute(
            "DELETE FROM discord_channels WHERE channel_id = ?", (thread_id,)))

    async def remove_guild(self, guild_id: int) -> None:
        """The bot left (or was removed from) the guild."""
        await self._write(f"forgetting the channels of guild {guild_id}", lambda: self.store.execute(
            "DELETE FROM discord_channels WHERE guild_id = ?", (guild_id,)))

    async def _write(self, what: str, write: Callable[[], Any]) -> None:
        if not self.store.is_open:
            return
        try:
            await write()
        except StorageError as exc:
            log.warning("channel directory: %s failed (%s); it is written again on the next change or start", what,
                        exc)


class DatabaseChannelScope:
    """The relay's channel check from ``discord_channels`` (no Discord connection needed).

    Each answer (also "no such channel") is remembered for ``ttl`` seconds, so a burst of posts to one
    channel costs one query; concurrent lookups of one channel share it. ``lookup`` and ``ready`` raise
    ``StorageError`` when the database cannot answer (the post gets 503, not 403).
    """

    def __init__(
        self, store: Store, ttl: float = CACHE_TTL, *, max_entries: int = CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._cache: OrderedDict[int, tuple[float, ChannelInfo | None]] = OrderedDict()
        self._pending: dict[int, asyncio.Future[ChannelInfo | None]] = {}
        self._filled = False
        self._empty_until = 0.0

    async def ready(self) -> bool:
        """True once a gateway process has recorded any channel: before that, every post would be a 403
        (answered 503 "still connecting" instead). An empty directory is asked again after ``ttl``."""
        if not self._filled and self.clock() >= self._empty_until:
            self._filled = await self.store.fetchone("SELECT 1 FROM discord_channels LIMIT 1") is not None
            self._empty_until = self.clock() + self.ttl
        return self._filled

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        cached = self._cache.get(channel_id)
        if cached is not None and cached[0] > self.clock():
            self._cache.move_to_end(channel_id)
            return cached[1]
        pending = self._pending.get(channel_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(channel_id))
            self._pending[channel_id] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(channel_id, None))
        return await asyncio.shield(pending)

    async def _fetch(self, channel_id: int) -> ChannelInfo | None:
        row = await self.store.fetchone(
            "SELECT guild_id, parent_id, messageable FROM discord_channels WHERE channel_id = ?", (channel_id,))
        info = None if row is None else ChannelInfo(int(row[0]), None if row[1] is None else int(row[1]), row[2] == 1)
        self._cache[channel_id] = (self.clock() + self.ttl, info)
        self._cache.move_to_end(channel_id)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return info


class CacheThenDirectoryScope:
    """A run process's check: its own discord.py cache first, then the directory (a guild on another
    process's shard is only there)."""

    def __init__(self, local: ChannelScope, directory: ChannelScope) -> None:
        self.local = local
        self.directory = directory

    async def ready(self) -> bool:
        return await self.local.ready() and await self.directory.ready()

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        info = await self.local.lookup(channel_id)
        return info if info is not None else await self.directory.lookup(channel_id)
