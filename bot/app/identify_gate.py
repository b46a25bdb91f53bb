"""IDENTIFY turns shared by every process of the bot, through the database.

Discord lets a bot start one session (IDENTIFY) per ``max_concurrency`` bucket every 5 seconds,
counted over all of its connections: shard ``i`` is in bucket ``i % max_concurrency``. discord.py
spaces the IDENTIFYs of one process; with shards spread over processes, ``DatabaseIdentifyGate``
spaces them across all of them: bucket ``n`` is the token bucket ``identify:<n>`` (one token every
``interval`` seconds, no burst), and a shard waits for its token before it identifies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.storage.buckets import TokenBuckets
from bot.storage.errors import StorageError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0


def identify_bucket(shard_id: int, max_concurrency: int) -> str:
    return f"identify:{shard_id % max_concurrency}"


class DatabaseIdentifyGate:
    """``wait_turn(shard_id)`` returns when the shard may IDENTIFY (``IdentifyGate`` of bot.app.sharding).

    ``max_concurrency`` is Discord's (``GET /gateway/bot``'s ``session_start_limit``); it may be set
    once known, before the first shard connects. ``sleep`` waits the delay the bucket asks for.
    """

    def __init__(
        self,
        buckets: TokenBuckets,
        *,
        max_concurrency: int = 1,
        interval: float = DEFAULT_INTERVAL,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1 or interval <= 0:
            raise ValueError("max_concurrency must be at least 1 and interval positive")
        self.buckets = buckets
        self.max_concurrency = max_concurrency
        self.interval = interval
        self.sleep = sleep

    async def wait_turn(self, shard_id: int) -> None:
        name = identify_bucket(shard_id, self.max_concurrency)
        while True:
            try:
                delay = await self.buckets.take(name, 1.0 / self.interval, 1)
            except StorageError as exc:
                # No shared turn to be had: wait a whole interval, as discord.py does between its own IDENTIFYs.
                log.warning("shard %d: the IDENTIFY turn could not be read from the database (%s); "
                            "identifying after %g s", shard_id, exc, self.interval)
                await self.sleep(self.interval)
                return
            if delay <= 0:
                return
            log.debug("shard %d: IDENTIFY waits %.1f s for its turn (%s)", shard_id, delay, name)
            await self.sleep(delay)
