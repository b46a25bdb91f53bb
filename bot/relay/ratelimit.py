"""Per-key rate limits and the pacing of relay deliveries, both in token buckets every process shares.

``KeyRateLimiter``: each key has the bucket ``relay-key:<key_id>`` in the database (``rate_per_minute``
steady, ``burst`` capacity), so a key limited to N posts a minute gets N in all, however many web
processes take them. ``Pacer``: deliveries start at most ``rate`` a second, spaced (no bursts); on
PostgreSQL that budget is the bucket ``relay-delivery``, shared by every delivering process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from bot.storage.buckets import TokenBuckets
from bot.storage.errors import StorageError

log = logging.getLogger(__name__)

DELIVERY_BUCKET = "relay-delivery"


def key_bucket(key_id: str) -> str:
    """The name of a relay key's bucket in ``rate_buckets``."""
    return f"relay-key:{key_id}"


class KeyRateLimiter:
    """Per-key token bucket (``rate_per_minute`` steady, ``burst`` capacity) in the database."""

    def __init__(self, buckets: TokenBuckets, rate_per_minute: int, burst: int) -> None:
        self.buckets = buckets
        self.rate = rate_per_minute / 60.0
        self.capacity = float(max(burst, 1))

    async def acquire(self, key: str) -> float:
        """Take one token for ``key`` (one statement): 0.0 when allowed, else the seconds to wait before
        retrying. Raises ``StorageError`` when the database cannot answer."""
        return await self.buckets.take(key_bucket(key), self.rate, self.capacity)

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """Whole seconds, rounded up (HTTP's Retry-After has no fractions); the bucket's clock tick of
        margin (under a microsecond) does not make another second."""
        return str(max(1, math.ceil(seconds - 1e-6)))

    async def forget(self, key: str) -> None:
        """Drop the key's bucket (a revoked key's row would otherwise stay)."""
        await self.buckets.forget(key_bucket(key))


class Pacer:
    """Spaces request starts at least ``1/rate`` seconds apart (no bursts), shared by all workers.

    With ``buckets`` (PostgreSQL: many delivering processes) the spacing is the shared bucket
    ``relay-delivery`` (rate ``rate``, burst 1), so the processes together stay under ``rate``; while
    the database cannot be reached, each process spaces its own starts as it does without one.

    In the bot, every request discord.py sends is already paced (bot/app/discord_pacing.py), relay
    posts included: the factory calls ``share_client_budget()`` so that posts take their turn in that
    one budget instead of waiting here as well (unless the relay was given a lower rate than that
    budget's, which then stays the relay's own cap).
    """

    def __init__(
        self,
        rate_per_second: float,
        *,
        buckets: TokenBuckets | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate_per_second
        self.interval = 1.0 / rate_per_second
        self.buckets = buckets
        self.shared = False
        self.clock = clock
        self.sleep = sleep
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._warned = False

    def share_client_budget(self, client_rate: float) -> None:
        """Stop spacing here when the client's own pacer (``client_rate`` per second, shared with
        every other request) is as strict: spacing twice would only add waits."""
        self.shared = self.rate >= client_rate

    async def wait(self) -> None:
        if self.shared:
            return
        async with self._lock:
            if self.buckets is not None and self.buckets.store.is_open:
                try:
                    while (delay := await self.buckets.take(DELIVERY_BUCKET, self.rate, 1)) > 0:
                        await self.sleep(delay)
                    self._warned = False
                    return
                except StorageError as exc:
                    if not self._warned:
                        log.warning("relay: the shared delivery pace could not be read (%s); "
                                    "spacing this process's deliveries on its own meanwhile", exc)
                        self._warned = True
            now = self.clock()
            if self._next > now:
                await self.sleep(self._next - now)
                now = self.clock()
            self._next = max(now, self._next) + self.interval
