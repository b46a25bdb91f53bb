"""One budget for every request the process makes to Discord's REST API.

Discord allows a bot 50 requests per second in all (the *global* limit, on top of each route's own
bucket); going over earns 429s, and 10,000 of those in 10 minutes get the bot's IP banned.
``DiscordPacer`` is a token bucket in front of discord.py's HTTP session: discord.py accepts an
``aiohttp.TraceConfig`` (``Client(http_trace=...)``, public API) and aiohttp awaits every
``on_request_start`` callback before it sends the request, so waiting for a token there paces chat,
the relay, /imagine and everything else discord.py sends, with nothing to remember at call sites.

What is not paced: Discord documents that *interaction endpoints are not bound to the bot's global
rate limit*. That covers the interaction callback (``POST /interactions/{id}/{token}/callback``, the
acknowledgement that must arrive within 3 s, so it must never queue behind edits) and the
interaction's webhook (``/webhooks/{application_id}/{token}/…``: the original response and
followups). Both go out at once and take nothing from the budget; their per-route buckets are still
discord.py's business. Every other webhook (the relay's channel webhooks) is paced.

Priority: requests made inside ``deferrable()`` (a streaming answer's intermediate edits) queue behind
everything else (first messages, final edits, relay posts), and can be withdrawn while they wait
(the final edit supersedes them). ``congested()`` tells a renderer to skip intermediate edits while
the queue would make a new request wait longer than ``congestion_wait``.

Many processes (PostgreSQL): the 50/s are the bot token's, whichever process sends. With ``buckets``
the tokens come from the shared bucket ``discord`` in the database (same rate and burst), so the
processes together stay within the budget. A process takes as many tokens per round trip as it has
requests queued (up to the burst; one after a refusal, so a busy process cannot starve a quiet one)
and drops any it could not use at once (a request withdrawn meanwhile): no tokens are held back for
later. Before the store is open (discord.py's login) and while the database cannot answer, the
process's own bucket paces it as on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Protocol

import aiohttp
import yarl

from bot.storage.buckets import TokenBuckets
from bot.storage.errors import StorageError

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_RATE",
    "SHARED_BUCKET",
    "Deferral",
    "DiscordPacer",
    "PacerStats",
    "Withdrawn",
    "interaction_exempt",
]

#: Steady requests per second and bucket size: at most ``rate + burst`` = 45 requests start in any
#: second, 5 under Discord's 50 so that network jitter (requests bunching up on their way) stays clear.
DEFAULT_RATE = 40.0
DEFAULT_BURST = 5
#: A renderer skips intermediate edits while a new request would wait longer than this.
DEFAULT_CONGESTION_WAIT = 0.25
#: the ``rate_buckets`` row every process takes its Discord request tokens from (PostgreSQL)
SHARED_BUCKET = "discord"

HIGH, LOW = 0, 1

_INTERACTION_CALLBACK = re.compile(r"/interactions/\d+/[^/]+/callback$")
_WEBHOOK = re.compile(r"/webhooks/(\d+)/[^/]+")

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class _Monotonic:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def interaction_exempt(application_id: Callable[[], int | None]) -> Callable[[str, yarl.URL], bool]:
    """The requests Discord exempts from the global limit: an interaction's callback, and its webhook
    (whose id is the application's; ``application_id`` is read per request, it is known after login)."""

    def exempt(method: str, url: yarl.URL) -> bool:
        path = url.path
        if _INTERACTION_CALLBACK.search(path):
            return True
        match = _WEBHOOK.search(path)
        if match is None:
            return False
        app = application_id()
        return app is not None and int(match.group(1)) == app

    return exempt


class Withdrawn(Exception):
    """A deferrable request was withdrawn before it was sent (nothing reached Discord)."""


@dataclass(eq=False)
class Deferral:
    """Requests made inside one ``deferrable()`` block: low priority, and withdrawable until sent."""

    withdrawn: bool = False
    _waiting: set[asyncio.Future[None]] = field(default_factory=set)

    def withdraw(self) -> None:
        """Drop the requests still waiting for their turn (they raise ``Withdrawn``); sent ones stay sent."""
        self.withdrawn = True
        for fut in self._waiting:
            if not fut.done():
                fut.set_exception(Withdrawn())
        self._waiting.clear()


_deferral: contextvars.ContextVar[Deferral | None] = contextvars.ContextVar("discord_deferral", default=None)


@dataclass(slots=True)
class PacerStats:
    """Counters for benchmarks and logs."""

    paced: int = 0
    exempt: int = 0
    waited: int = 0
    withdrawn: int = 0
    max_wait: float = 0.0


class DiscordPacer:
    """A token bucket (``rate`` per second, ``burst`` tokens) with a two-level priority queue.

    One per process: every request discord.py makes waits in ``trace_config()``'s callback for a
    token, unless ``exempt(method, url)`` says Discord does not count it. With ``buckets`` (set when
    the store is PostgreSQL) the tokens are the shared bucket's, taken by every process.
    """

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        *,
        burst: int = DEFAULT_BURST,
        congestion_wait: float = DEFAULT_CONGESTION_WAIT,
        exempt: Callable[[str, yarl.URL], bool] | None = None,
        clock: Clock | None = None,
        buckets: TokenBuckets | None = None,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.congestion_wait = congestion_wait
        self.exempt = exempt if exempt is not None else (lambda method, url: False)
        self.clock: Clock = clock if clock is not None else _Monotonic()
        self.stats = PacerStats()
        self.buckets = buckets
        self._allowance = 0  # shared tokens taken for the requests queued now
        self._refused = False  # the shared bucket refused the last take: ask for one token next
        self._warned = False
        self._tokens = self.burst
        self._stamp: float | None = None
        self._seq = itertools.count()
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._dispatcher: asyncio.Task[None] | None = None

    # -- the budget ------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Requests queued for a token (withdrawn ones excluded)."""
        return sum(1 for _, _, fut in self._queue if not fut.done())

    def congested(self) -> bool:
        """True while a new request would wait longer than ``congestion_wait`` for its token
        (shared: as this process's own queue makes it wait)."""
        available = self._refill() if self.buckets is None else self._allowance
        return (self.waiting + 1 - available) / self.rate > self.congestion_wait

    @contextlib.contextmanager
    def deferrable(self) -> Iterator[Deferral]:
        """Requests made inside (in this task) wait behind all others and can be withdrawn."""
        deferral = Deferral()
        token = _deferral.set(deferral)
        try:
            yield deferral
        finally:
            _deferral.reset(token)

    def _refill(self) -> float:
        now = self.clock.now()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return self._tokens

    def _take_local(self) -> bool:
        if self._refill() >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _take(self) -> bool:
        if self.buckets is None:
            return self._take_local()
        if self._allowance >= 1:
            self._allowance -= 1
            return True
        return False

    async def _replenish(self) -> float:
        """Make tokens available to ``_take``: 0.0 when there are some now, else the seconds to wait."""
        if self.buckets is None:
            return self._local_wait()  # the local bucket refills by itself
        if self.buckets.store.is_open:
            want = 1 if self._refused else max(1, min(self.waiting, int(self.burst)))
            try:
                wait = await self.buckets.take(SHARED_BUCKET, self.rate, self.burst, want)
            except StorageError as exc:
                if not self._warned:
                    log.warning("Discord pacing: the shared budget could not be read (%s); pacing this "
                                "process on its own meanwhile", exc)
                    self._warned = True
            else:
                self._warned = False
                self._refused = wait > 0
                if wait == 0:
                    self._allowance += want
                return wait
        if self._take_local():  # no database yet (login) or none reachable: this process's own bucket
            self._allowance += 1
            return 0.0
        return self._local_wait()

    def _local_wait(self) -> float:
        return (1.0 - self._tokens) / self.rate

    async def acquire(self) -> None:
        """Wait for a token: at once when one is free and nobody is queued, else in priority order
        (low priority inside ``deferrable()``)."""
        deferral = _deferral.get()
        self.stats.paced += 1
        if deferral is not None and deferral.withdrawn:
            self.stats.withdrawn += 1
            raise Withdrawn()
        if not self.waiting and self._take():
            return
        started = self.clock.now()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (LOW if deferral is not None else HIGH, next(self._seq), fut))
        if deferral is not None:
            deferral._waiting.add(fut)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="discord-pacer")
        try:
            await fut
        except Withdrawn:
            self.stats.withdrawn += 1
            raise
        finally:
            if deferral is not None:
                deferral._waiting.discard(fut)
            if not fut.done():
                fut.cancel()  # the caller was cancelled: its place is skipped
        waited = self.clock.now() - started
        self.stats.waited += 1
        self.stats.max_wait = max(self.stats.max_wait, waited)

    async def _dispatch(self) -> None:
        """Hands out tokens to the queue, best priority first, as the bucket refills."""
        while True:
            while self._queue and self._queue[0][2].done():
                heapq.heappop(self._queue)  # withdrawn or cancelled
            if not self._queue:
                self._allowance = 0  # taken for requests that went away meanwhile: not kept for later
                return
            if self._take():
                _, _, fut = heapq.heappop(self._queue)
                fut.set_result(None)
                continue
            wait = await self._replenish()
            if wait > 0:
                await self.clock.sleep(wait)

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        for _, _, fut in self._queue:
            if not fut.done():
                fut.cancel()
        self._queue.clear()

    # -- discord.py's session --------------------------------------------------------------------

    async def _on_request_start(
        self, session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if self.exempt(params.method, params.url):
            self.stats.exempt += 1
            return
        await self.acquire()

    def trace_config(self) -> aiohttp.TraceConfig:
        """For ``discord.Client(http_trace=...)``: every request waits here for its token."""
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._on_request_start)
        return config
