"""Snowflake ids and Discord-style timestamps."""

from __future__ import annotations

import datetime
import threading
import time

DISCORD_EPOCH_MS = 1420070400000


class SnowflakeFactory:
    """Strictly increasing snowflakes whose timestamp part is the current time."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
            if candidate <= self._last:
                candidate = self._last + 1
            self._last = candidate
            return candidate


def iso_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def iso_from_snowflake(snowflake: int) -> str:
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat()
