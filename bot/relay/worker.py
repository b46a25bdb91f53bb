"""The delivery worker: drains the outbox into Discord through a ``Transport``.

* Order: posts to one channel are sent one at a time, in acceptance order; different channels are
  delivered concurrently (up to ``concurrency`` at once).
* Every outcome is recorded in the outbox; permanent failures are ``failed`` with the reason,
  retryable ones are tried again with exponential backoff up to ``max_attempts``.
* ``?wait=true`` callers get a future settled when this process finishes the post.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable

from bot.relay.metrics import RelayMetrics
from bot.relay.outbox import Outbox, QueuedPost
from bot.relay.transport import RetryableError, Transport, classify

log = logging.getLogger(__name__)


class DeliveryWorker:
    """Schedules deliveries per channel, records every outcome in the outbox, wakes ``?wait=true`` callers."""

    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        metrics: RelayMetrics,
        *,
        concurrency: int,
        max_attempts: int,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.transport = transport
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.clock = clock
        self._channels: dict[int, deque[str]] = {}
        self._known: set[str] = set()
        self._active: set[int] = set()
        self._ready: asyncio.Queue[int] = asyncio.Queue()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: dict[asyncio.Task[None], str] = {}
        self._waiters: dict[str, list[asyncio.Future[str]]] = {}
        self._stopping = False
        self.deliveries = metrics.deliveries
        self.latency = metrics.delivery_latency
        self.pending_gauge = metrics.scheduled

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every undelivered post (after a restart: including in-flight ones) and start the workers."""
        self._stopping = False
        self._channels.clear()
        self._known.clear()
        self._active.clear()
        self._ready = asyncio.Queue()
        pending = await self.outbox.pending()
        self._add(pending)
        for i in range(self.concurrency):
            self._tasks.append(asyncio.create_task(self._work(), name=f"relay-delivery-{i}"))
        if pending:
            log.info("relay: %d undelivered post(s) resumed from the outbox", len(pending))

    async def stop(self, grace: float = 5.0) -> None:
        """Let in-flight sends finish for up to ``grace`` seconds, then cancel (they stay in the outbox)."""
        self._stopping = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        idle = [t for t in self._tasks if t not in self._busy]
        for task in idle:
            task.cancel()
        busy = [t for t in self._tasks if t in self._busy]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # -- scheduling -------------------------------------------------------------------------------
    def enqueue(self, posts: list[QueuedPost]) -> None:
        """Called right after the outbox commits new posts."""
        self._add(posts)

    def _add(self, posts: list[QueuedPost]) -> None:
        now = self.clock()
        for post in posts:
            if post.id in self._known:
                continue
            self._known.add(post.id)
            queue = self._channels.setdefault(post.channel_id, deque())
            queue.append(post.id)
            if post.channel_id not in self._active:
                self._active.add(post.channel_id)
                delay = post.next_attempt_at - now
                if delay > 0:
                    self._later(post.channel_id, delay)
                else:
                    self._ready.put_nowait(post.channel_id)
        self.pending_gauge.set(len(self._known))

    def _later(self, channel_id: int, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(channel_id, None)
            self._ready.put_nowait(channel_id)

        self._timers[channel_id] = loop.call_later(delay, fire)

    @property
    def scheduled(self) -> int:
        return len(self._known)

    def waiter(self, post_id: str) -> asyncio.Future[str]:
        """A future set to the final status ("delivered"/"failed") when this process settles the post."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(post_id, []).append(future)
        return future

    def drop_waiter(self, post_id: str, future: asyncio.Future[str]) -> None:
        futures = self._waiters.get(post_id)
        if futures and future in futures:
            futures.remove(future)
            if not futures:
                del self._waiters[post_id]

    def _settle(self, post_id: str, status: str) -> None:
        for future in self._waiters.pop(post_id, []):
            if not future.done():
                future.set_result(status)

    async def _work(self) -> None:
        while True:
            channel_id = await self._ready.get()
            queue = self._channels.get(channel_id)
            if not queue:
                self._active.discard(channel_id)
                continue
            post_id = queue[0]
            task = asyncio.current_task()
            assert task is not None
            self._busy[task] = post_id
            try:
                retry_in = await self._process(post_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # the outbox itself failed (database): try the channel again shortly
                log.exception("relay %s: delivery bookkeeping failed", post_id)
                retry_in = 5.0
            finally:
                self._busy.pop(task, None)
            if self._stopping:
                return  # the outbox holds the post's state; the next start picks it up
            if retry_in is not None:
                self._later(channel_id, retry_in)
                continue
            queue.popleft()
            self._known.discard(post_id)
            self.pending_gauge.set(len(self._known))
            if queue:
                self._ready.put_nowait(channel_id)
            else:
                del self._channels[channel_id]
                self._active.discard(channel_id)

    def backoff(self, attempts: int) -> float:
        base = min(self.retry_max_delay, self.retry_base_delay * (2 ** max(0, attempts - 1)))
        return base * random.uniform(0.8, 1.2)

    async def _process(self, post_id: str) -> float | None:
        """One attempt. Returns None when the post is settled, else the seconds until the next attempt."""
        record = await self.outbox.get(post_id)
        if record is None or record.status in ("delivered", "failed"):
            self._settle(post_id, record.status if record else "failed")
            return None
        prior_doubt = record.in_doubt_since
        started = self.clock()
        await self.outbox.mark_attempt(post_id, started)
        attempts = record.attempts + 1
        try:
            result = await self.transport.deliver(record, prior_doubt=prior_doubt)
        except asyncio.CancelledError:
            raise  # shutting down: the post stays "sending" and is resumed (same nonce) on the next start
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, RetryableError) and attempts < self.max_attempts:
                delay = self.backoff(attempts)
                if error.retry_after is not None:
                    delay = (
                        max(error.retry_after, 0.0) if error.code == "unknown_webhook"
                        else max(delay, error.retry_after)
                    )
                doubt = (prior_doubt or started) if error.in_doubt else prior_doubt
                await self.outbox.mark_retry(post_id, at=self.clock() + delay, in_doubt_since=doubt,
                                             code=error.code, message=error.message)
                self.deliveries.labels(outcome="retried").inc()
                log.info("relay %s: attempt %d failed (%s); retrying in %.1fs", post_id, attempts, error.code, delay)
                return delay
            message = error.message
            if isinstance(error, RetryableError):
                message = f"gave up after {attempts} attempts; last error: {error.message}"
            await self.outbox.mark_failed(post_id, error.code, message)
            self.deliveries.labels(outcome="failed").inc()
            log.warning("relay %s: failed (%s)", post_id, error.code)
            self._settle(post_id, "failed")
            return None
        await self.outbox.mark_delivered(post_id, result.message_id, note=result.note)
        self.deliveries.labels(outcome="delivered").inc()
        self.latency.observe(max(0.0, self.clock() - record.created_at))
        self._settle(post_id, "delivered")
        return None
