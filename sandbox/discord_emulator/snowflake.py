"""Snowflake ids and Discord-style timestamps."""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Iterator
from typing import Optional

DISCORD_EPOCH_MS = 1420070400000


class SnowflakeFactory:
    """Strictly increasing snowflakes whose timestamp part is the current time."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()
        self._pinned_ms: Optional[int] = None

    def _now_ms(self) -> int:
        return self._pinned_ms if self._pinned_ms is not None else int(time.time() * 1000)

    @contextlib.contextmanager
    def pinned(self, unix_ms: int) -> Iterator[None]:
        """Inside, ids are made as if the time were ``unix_ms``: the same calls give the same ids on
        every run (the sandbox's world keeps its ids across restarts). Later ids use the real time."""
        self._pinned_ms = unix_ms
        try:
            yield
        finally:
            self._pinned_ms = None

    def next(self) -> int:
        with self._lock:
            candidate = (self._now_ms() - DISCORD_EPOCH_MS) << 22
            if candidate <= self._last:
                candidate = self._last + 1
            self._last = candidate
            return candidate

    def next_on_shard(self, shard_id: int, shard_count: int) -> int:
        """The next snowflake whose guild would be on ``shard_id`` of ``shard_count``: its timestamp (ms)
        is moved forward, at most ``shard_count - 1`` ms, until ``(id >> 22) % shard_count == shard_id``."""
        if not 0 <= shard_id < shard_count:
            raise ValueError(f"shard {shard_id} is not in 0..{shard_count - 1}")
        with self._lock:
            ms = max(self._now_ms() - DISCORD_EPOCH_MS, (self._last >> 22) + 1)
            ms += (shard_id - ms) % shard_count
            self._last = ms << 22
            return self._last


def shard_of(snowflake: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events to (and DMs, guild id 0, to shard 0)."""
    return (snowflake >> 22) % shard_count


def iso_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def iso_from_snowflake(snowflake: int) -> str:
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat()
