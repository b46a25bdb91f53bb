"""The delivery worker: claims posts from the outbox and sends them through a ``Transport``.

* The database is the queue, shared by every ``gatecord run`` process: a worker claims the oldest
  pending post of a channel (``Outbox.claim``), so a channel gets one post at a time, in acceptance
  order, whichever process sends it; different channels are delivered concurrently (up to
  ``concurrency`` at once per process).
* Posts accepted by this process are claimed at once (``enqueue``); posts accepted elsewhere (the web
  tier, another process) and retries that fell due are found by looking at the outbox every
  ``poll_interval`` seconds.
* A claim is renewed while its attempt runs; a process that stops (crash, SIGKILL) leaves claims that
  go stale after ``claim_timeout``, and any process then retries those posts with the same nonce.
* Every outcome is recorded in the outbox; permanent failures are ``failed`` with the reason,
  retryable ones are tried again with exponential backoff up to ``max_attempts``.
* ``?wait=true`` callers get a future settled when this process finishes the post.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from bot.relay.metrics import RelayMetrics
from bot.relay.outbox import Claim, Outbox, QueuedPost
from bot.relay.transport import RetryableError, Transport, classify

log = logging.getLogger(__name__)

BOOKKEEPING_RETRY = 5.0  # seconds before a channel whose outcome could not be recorded is looked at again


class DeliveryWorker:
    """Claims due posts, sends them, records every outcome, wakes ``?wait=true`` callers."""

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
        poll_interval: float = 0.5,
        claim_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``clock``: the wall clock the outbox's times are written with; ``sleep``: how the poll waits
        (tests inject a clock's or an event's)."""
        self.outbox = outbox
        self.transport = transport
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.poll_interval = poll_interval
        self.claim_timeout = claim_timeout
        self.clock = clock
        self.sleep = sleep
        self._inflight: dict[int, asyncio.Task[None]] = {}  # channel -> its delivery
        self._claims: dict[asyncio.Task[None], Claim] = {}
        self._touched: set[int] = set()  # channels with news here: a post accepted, a post settled, a retry due
        self._timers: dict[int, asyncio.TimerHandle] = {}  # channel -> when to look again (a retry set here)
        self._scan = False  # look at every channel on the next pass
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: dict[str, list[asyncio.Future[str]]] = {}
        self._stopping = True
        self.claim_passes = 0
        self.deliveries = metrics.deliveries
        self.latency = metrics.delivery_latency

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start claiming: undelivered posts (after a restart: in-flight ones too) are picked up at once."""
        if not self._stopping:
            return
        self._stopping = False
        self._touched.clear()
        if self.outbox.store.dialect == "sqlite":
            # One process owns an SQLite file: a claim still in it is a previous run's (killed mid-send).
            released = await self.outbox.release_all()
            if released:
                log.info("relay: %d post(s) in flight when the bot last stopped will be sent again", released)
        self._scan = True
        self._wake.set()
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="relay-claims"),
            asyncio.create_task(self._poller(), name="relay-poll"),
            asyncio.create_task(self._renewer(), name="relay-claim-renewal"),
        ]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; let in-flight sends finish for up to ``grace`` seconds, then cancel them and
        release their claims (the posts stay in the outbox, in doubt, for the next claim)."""
        if self._stopping:
            return
        self._stopping = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        claiming, poller, renewer = self._tasks
        self._tasks = []
        poller.cancel()
        self._wake.set()
        await asyncio.gather(claiming, poller, return_exceptions=True)  # a claim under way ends (or is handed back)
        busy = list(self._inflight.values())
        if busy:
            await asyncio.wait(busy, timeout=grace)
        cut = [self._claims[t] for t in busy if not t.done() and t in self._claims]
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        if cut:
            try:
                await self.outbox.release(cut)
            except Exception as exc:  # noqa: BLE001 - they go stale and are taken over after claim_timeout
                log.warning("relay: could not release %d claim(s) at stop (%s); they are retried after %g s",
                            len(cut), exc, self.claim_timeout)

    # -- news from this process -------------------------------------------------------------------
    def enqueue(self, posts: list[QueuedPost]) -> None:
        """Called right after the outbox commits new posts: claim them now rather than at the next poll."""
        self._touch({post.channel_id for post in posts})

    def poll(self) -> None:
        """Look at every channel now (what the poll interval does)."""
        self._scan = True
        self._wake.set()

    def _touch(self, channels: set[int]) -> None:
        self._touched |= channels
        self._wake.set()

    @property
    def scheduled(self) -> int:
        """Posts this process is sending now."""
        return len(self._inflight)

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

    # -- claiming ---------------------------------------------------------------------------------
    async def _poller(self) -> None:
        """Every ``poll_interval``: look at every channel (posts accepted elsewhere, retries due, stale claims)."""
        while True:
            await self.sleep(self.poll_interval)
            self.poll()

    async def _renewer(self) -> None:
        """Every third of ``claim_timeout``: renew the claims of the attempts still running."""
        while True:
            await self.sleep(self.claim_timeout / 3)
            if self._claims:
                try:
                    await self.outbox.renew(list(self._claims.values()), self.clock())
                except Exception as exc:  # noqa: BLE001 - tried again next time
                    log.warning("relay: renewing %d claim(s) failed (%s)", len(self._claims), exc)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if not self._stopping:
                await self._claim_pass()

    async def _claim_pass(self) -> None:
        """Claim what this process has room for: every channel's head when a look at all is due, else the
        heads of the channels with news here."""
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return  # a delivery ending wakes the loop again
        now = self.clock()
        channels: set[int] | None = None
        if self._scan:
            self._scan = False
            self._touched.clear()
        else:
            channels = self._touched - self._inflight.keys() - self._timers.keys()
            self._touched.clear()
            if not channels:
                return
        self.claim_passes += 1
        try:
            claims = await self.outbox.claim(now=now, stale_before=now - self.claim_timeout, limit=free,
                                             channels=channels)
        except Exception as exc:  # noqa: BLE001 - e.g. the database is unreachable: the next poll tries again
            log.warning("relay: claiming posts to deliver failed (%s); trying again shortly", exc)
            return
        if self._stopping:  # stop() began meanwhile: hand the posts back, untouched
            await self.outbox.unclaim(claims)
            return
        for claim in claims:
            self._begin(claim)
        if channels is None and len(claims) == free:
            self._scan = True  # more may be due than there was room for: look again when a slot frees

    def _begin(self, claim: Claim) -> None:
        channel_id = claim.record.channel_id
        task = asyncio.create_task(self._deliver(claim), name=f"relay-delivery-{claim.record.id}")
        self._inflight[channel_id] = task
        self._claims[task] = claim

        def done(finished: asyncio.Task[None]) -> None:
            self._claims.pop(finished, None)
            if self._inflight.get(channel_id) is finished:
                del self._inflight[channel_id]
            if not self._stopping:
                self._touch({channel_id})  # its channel's next post, if any, is claimable now

        task.add_done_callback(done)

    def _retry_channel_at(self, channel_id: int, delay: float) -> None:
        """This process set the channel's head to wait ``delay`` s: look at the channel again then (and
        not before: posts accepted for it meanwhile wait their turn)."""
        old = self._timers.pop(channel_id, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._timers.pop(channel_id, None)
            self._touch({channel_id})

        self._timers[channel_id] = asyncio.get_running_loop().call_later(max(0.0, delay), fire)

    def backoff(self, attempts: int) -> float:
        base = min(self.retry_max_delay, self.retry_base_delay * (2 ** max(0, attempts - 1)))
        return base * random.uniform(0.8, 1.2)

    # -- one attempt ------------------------------------------------------------------------------
    async def _deliver(self, claim: Claim) -> None:
        channel_id = claim.record.channel_id
        try:
            retry_in = await self._attempt(claim)
        except asyncio.CancelledError:
            raise  # shutting down: stop() releases the claim; the post is sent again (same nonce) later
        except Exception:  # the outbox itself failed (database): the claim goes stale and is taken over
            log.exception("relay %s: delivery bookkeeping failed", claim.record.id)
            retry_in = self.claim_timeout + BOOKKEEPING_RETRY
        if retry_in is not None and not self._stopping:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._retry_channel_at(channel_id, retry_in)

    async def _attempt(self, claim: Claim) -> float | None:
        """One attempt. Returns None when the post is settled, else the seconds until the next attempt."""
        record, attempts, started = claim.record, claim.attempt, claim.claimed_at
        post_id = record.id
        prior_doubt = record.in_doubt_since
        try:
            result = await self.transport.deliver(record, prior_doubt=prior_doubt)
        except asyncio.CancelledError:
            raise
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
                                             code=error.code, message=error.message, attempt=attempts)
                self.deliveries.labels(outcome="retried").inc()
                log.info("relay %s: attempt %d failed (%s); retrying in %.1fs", post_id, attempts, error.code, delay)
                return delay
            message = error.message
            if isinstance(error, RetryableError):
                message = f"gave up after {attempts} attempts; last error: {error.message}"
            await self.outbox.mark_failed(post_id, error.code, message, attempt=attempts)
            self.deliveries.labels(outcome="failed").inc()
            log.warning("relay %s: failed (%s)", post_id, error.code)
            self._settle(post_id, "failed")
            return None
        await self.outbox.mark_delivered(post_id, result.message_id, note=result.note)
        self.deliveries.labels(outcome="delivered").inc()
        self.latency.observe(max(0.0, self.clock() - record.created_at))
        self._settle(post_id, "delivered")
        return None
