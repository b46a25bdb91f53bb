"""Per-key token bucket (``rate_per_minute`` steady, ``burst`` capacity), and a pacer for Discord's
global request limit. Both are in memory: a restart forgets them, which errs on the side of allowing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable


class KeyRateLimiter:
    def __init__(self, rate_per_minute: int, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_minute / 60.0
        self.capacity = float(max(burst, 1))
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds to wait before retrying."""
        now = self.clock()
        tokens, stamp = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """Whole seconds, rounded up (HTTP's Retry-After has no fractions)."""
        return str(max(1, math.ceil(seconds)))

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)


class Pacer:
    """Spaces request starts at least ``1/rate`` seconds apart (no bursts), shared by all workers.

    In the bot, every request discord.py sends is already paced process-wide
    (bot/app/discord_pacing.py), relay posts included: the factory calls ``share_client_budget()``
    so that posts take their turn in that one budget instead of waiting here as well (unless the
    relay was given a lower rate than that budget's, which then stays the relay's own cap).
    """

    def __init__(self, rate_per_second: float) -> None:
        self.interval = 1.0 / rate_per_second
        self.shared = False
        self._next = 0.0
        self._lock = asyncio.Lock()

    def share_client_budget(self, client_rate: float) -> None:
        """Stop spacing here when the client's own pacer (``client_rate`` per second, shared with
        every other request) is as strict: spacing twice would only add waits."""
        self.shared = 1.0 / self.interval >= client_rate

    async def wait(self) -> None:
        if self.shared:
            return
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
                now = time.monotonic()
            self._next = max(now, self._next) + self.interval
